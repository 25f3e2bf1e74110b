"""Argument checking for conv2d and everything built on it, in one place.

`check_conv_args` turns what a user passed into a `ConvSpec`: every shape,
stride, padding amount and dtype resolved and checked, so that a bad argument
raises a ValueError or TypeError naming it before anything reaches XLA. All of
conv2d's methods, conv2d_flops, the sharded functions and the Flax modules go
through it, so they accept and refuse exactly the same things.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from typing import Any, TypeGuard

import jax
import jax.numpy as jnp
import numpy as np

from jconv._layouts import LAYOUT_INFO, LAYOUTS
from jconv._typing import (
    DTypeLike,
    IntLike,
    IntPair,
    PaddingLike,
    Pads,
    PrecisionLike,
    Shape,
    ShapeLike,
)

PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
SUPPORTED_DTYPES = "float16, bfloat16, float32 and float64 (with jax_enable_x64)"


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """A fully resolved, checked 2-D convolution problem (hashable, static under jit).

    Shapes are stored by meaning, whatever the layout: the input is
    (n, c, height, width), the kernel (o, c // groups, kh, kw) and the output
    (n, o, mh, mw). (In the lowerings `w` is the kernel, so the image's sizes
    are spelled out.)
    """

    layout: str  # 'NCHW' or 'NHWC'
    batched: bool  # whether x had a batch axis
    n: int
    c: int
    height: int  # x's, before input dilation and padding
    width: int
    o: int
    kh: int
    kw: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: Pads  # ((top, bottom), (left, right)); a negative amount crops (conv2d's only)
    padding_mode: str
    precision: Any
    preferred_element_type: Any  # numpy dtype or None
    dtype: Any  # numpy dtype the inputs are computed in (after promotion)
    # lax's lhs_dilation: input_dilation - 1 zeros between neighbouring pixels of x.
    input_dilation: tuple[int, int] = (1, 1)

    @property
    def is_plain(self) -> bool:
        """What a lowering runs: no input dilation, and no padding amount below zero.

        conv2d hands other specs to jconv/_subpixel.py, which splits them into plain ones.
        """
        return self.input_dilation == (1, 1) and min(min(p) for p in self.pads) >= 0

    @property
    def dilated_hw(self) -> tuple[int, int]:
        """x's spatial size once dilated: (height - 1) * ih + 1 (likewise the width)."""
        (ih, iw) = self.input_dilation
        return (self.height - 1) * ih + 1, (self.width - 1) * iw + 1

    @property
    def cg(self) -> int:
        """Input channels per group."""
        return self.c // self.groups

    @property
    def og(self) -> int:
        """Output channels per group."""
        return self.o // self.groups

    @property
    def padded_hw(self) -> tuple[int, int]:
        (t, b), (left, r) = self.pads
        dh, dw = self.dilated_hw
        return dh + t + b, dw + left + r

    @property
    def out_hw(self) -> tuple[int, int]:
        hp, wp = self.padded_hw
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return ((hp - (self.kh - 1) * dh - 1) // sh + 1, (wp - (self.kw - 1) * dw - 1) // sw + 1)

    @property
    def input_gradient_pads(self) -> Pads:
        """At stride 1, the padding of dy (a negative amount crops) whose correlation with
        the flipped kernel, the input gradient, comes out the size of x: each side's
        kernel reach, (k - 1) * dilation, less x's own padding there."""
        (top, bottom), (left, right) = self.pads
        reach_h, reach_w = (self.kh - 1) * self.dilation[0], (self.kw - 1) * self.dilation[1]
        return ((reach_h - top, reach_h - bottom), (reach_w - left, reach_w - right))

    @property
    def out_dtype(self) -> Any:
        """dtype of conv2d's result (before a bias is added)."""
        return self.preferred_element_type or self.dtype

    @property
    def acc_dtype(self) -> Any:
        """dtype jconv's lowerings accumulate in: at least float32.

        Chosen by width, not by JAX's promotion, which refuses float16 with float32
        under jax_numpy_dtype_promotion='strict' although nothing is being mixed.
        """
        out = np.dtype(self.out_dtype)
        return out if out.itemsize >= 4 else np.dtype(np.float32)

    @property
    def gemm_dtype(self) -> Any:
        """dtype of the operands of jconv's matrix products: the inputs' own where it has
        float32's range (bfloat16, float32, float64), else acc_dtype.

        A float16 partial result (one tap's share, one transformed value) can
        overflow where the whole convolution does not; in float32 it cannot.
        """
        dtype = np.dtype(self.dtype)
        return dtype if jnp.finfo(dtype).maxexp >= 128 else self.acc_dtype

    def out_shape(self) -> Shape:
        """The batched output shape in this spec's layout."""
        mh, mw = self.out_hw
        return (self.n, self.o, mh, mw) if self.layout == "NCHW" else (self.n, mh, mw, self.o)


def is_int(v: Any) -> TypeGuard[IntLike]:
    """An int or a NumPy integer, but not a bool: True is not a stride of 1."""
    if isinstance(v, (bool, np.bool_)):
        return False
    try:
        operator.index(v)
    except TypeError:
        return False
    return True


def check_shape(name: str, shape: ShapeLike) -> Shape:
    """A shape as a tuple of non-negative ints (NumPy integers accepted, bools refused)."""
    given = tuple(shape)
    if not all(is_int(d) for d in given):
        raise TypeError(f"{name} shape must hold ints, got {given!r}")
    resolved = tuple(operator.index(d) for d in given)
    if min(resolved, default=0) < 0:
        raise ValueError(f"{name} shape must not be negative, got {resolved}")
    return resolved


def check_device_count(devices: IntPair, *, pair: bool) -> tuple[int, ...]:
    """A mesh axis size (an int, at least 1), or with pair=True also a pair (Dh, Dw) of them."""
    what = "an int or a pair (Dh, Dw) of ints" if pair else "an int"
    given = tuple(devices) if pair and isinstance(devices, (tuple, list)) else (devices,)
    if len(given) not in ((1, 2) if pair else (1,)) or not all(is_int(d) for d in given):
        raise TypeError(f"devices must be {what}, at least 1; got {devices!r}")
    counts = tuple(operator.index(d) for d in given)
    if min(counts) < 1:
        raise ValueError(f"devices must be at least 1, got {devices!r}")
    return counts


def two_ints(value: object) -> tuple[int, int] | None:
    """value as a pair of ints if it is a sequence (not a str) of two ints, else None."""
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        first, second = value
        if is_int(first) and is_int(second):
            return operator.index(first), operator.index(second)
    return None


def int_pair(name: str, value: IntPair, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each at least `minimum`, as a pair."""
    if is_int(value):
        pair: tuple[int, int] | None = (operator.index(value), operator.index(value))
    else:
        pair = two_ints(value)
    if pair is None:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}")
    return pair


def check_layout(layout: str) -> None:
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def check_groups(groups: IntLike) -> int:
    """groups as an int, at least 1."""
    if not is_int(groups):
        raise TypeError(f"groups must be an int, got {groups!r}")
    if operator.index(groups) < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    return operator.index(groups)


def same_pads(size: int, window: int, stride: int, lower: bool) -> tuple[int, int]:
    """lax's 'SAME' padding of one axis: output ceil(size / stride), the odd pixel at the end.

    'SAME_LOWER' puts the odd pixel at the start instead.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def resolve_padding(
    padding: PaddingLike,
    in_hw: tuple[int, int],
    window_hw: tuple[int, int],
    stride: tuple[int, int],
    *,
    crop: bool = False,
) -> Pads:
    """Explicit ((top, bottom), (left, right)) amounts for any accepted padding form.

    window_hw is the dilated kernel size, (k - 1) * d + 1 on each axis. With
    crop, an amount may be negative (lax's crop); otherwise that is refused.
    """
    if isinstance(padding, str):
        kind = padding.upper()
        if kind not in PADDING_STRINGS:
            raise ValueError(
                f"padding must be one of {PADDING_STRINGS}, an int, a pair or "
                f"((top, bottom), (left, right)); got {padding!r}"
            )
        if kind == "VALID":
            return ((0, 0), (0, 0))
        lower = kind == "SAME_LOWER"
        return (
            same_pads(in_hw[0], window_hw[0], stride[0], lower),
            same_pads(in_hw[1], window_hw[1], stride[1], lower),
        )
    bad = ValueError(
        "padding must be 'VALID', 'SAME', 'SAME_LOWER', an int, a pair (ph, pw) or "
        f"((top, bottom), (left, right)) of ints; got {padding!r}"
    )
    if is_int(padding):
        p = operator.index(padding)
        pads: Pads = ((p, p), (p, p))
    elif (both := two_ints(padding)) is not None:
        (ph, pw) = both
        pads = ((ph, ph), (pw, pw))
    elif (
        isinstance(padding, Sequence)
        and len(padding) == 2
        and (h_pads := two_ints(padding[0])) is not None
        and (w_pads := two_ints(padding[1])) is not None
    ):
        pads = (h_pads, w_pads)
    else:
        raise bad
    if not crop and min(min(p) for p in pads) < 0:
        raise ValueError(f"padding must not be negative, got {padding!r}")
    return pads


def check_padding_mode(padding_mode: str, pads: Pads, in_hw: tuple[int, int]) -> None:
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    for axis, (lo, hi), size in zip(("height", "width"), pads, in_hw):
        if padding_mode == "reflect" and max(lo, hi) > size - 1:
            raise ValueError(
                f"reflect padding of {(lo, hi)} on the {axis} axis needs an input at least "
                f"{max(lo, hi) + 1} wide there, but it is {size}"
            )
        if padding_mode == "circular" and max(lo, hi) > size:
            raise ValueError(
                f"circular padding of {(lo, hi)} on the {axis} axis would wrap around more "
                f"than once: the input is only {size} wide there"
            )


def check_float_dtype(name: str, dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} has dtype {dtype}; jconv supports {SUPPORTED_DTYPES}")
    return dtype


def check_ndim(name: str, shape: Shape, ndim: int, layout: str) -> None:
    """The lesson's functions: an array of exactly `ndim` axes, laid out as `layout` says."""
    if len(shape) != ndim:
        raise ValueError(f"{name} must have shape {layout} ({ndim} dimensions), got shape {shape}")


def check_window(x_shape: Shape, k_shape: Shape) -> None:
    """The lesson's functions: a kernel window of at least one tap that fits in the input."""
    (nh, nw), (kh, kw) = x_shape[-2:], k_shape[-2:]
    if kh < 1 or kw < 1 or kh > nh or kw > nw:
        raise ValueError(
            f"kernel spatial size {(kh, kw)} must be at least 1 and at most the input's {(nh, nw)}"
        )


def check_precision(precision: Any) -> Any:
    """lax's precision forms: None, a Precision, its name, a pair of them, or an algorithm."""
    if precision is None or isinstance(
        precision, (jax.lax.Precision, jax.lax.DotAlgorithm, jax.lax.DotAlgorithmPreset)
    ):
        return precision
    if isinstance(precision, str):
        try:
            return jax.lax.Precision(precision)
        except ValueError as e:
            raise ValueError(
                f"precision {precision!r} is not a jax.lax.Precision name "
                "(such as 'default', 'high', 'highest')"
            ) from e
    if isinstance(precision, (tuple, list)) and len(precision) == 2:
        return tuple(check_precision(p) for p in precision)
    raise TypeError(
        "precision must be None, a jax.lax.Precision, its name, a pair of them or a "
        f"jax.lax.DotAlgorithmPreset; got {precision!r}"
    )


def check_conv_args(
    x_shape: ShapeLike,
    kernel_shape: ShapeLike,
    *,
    bias_shape: ShapeLike | None = None,
    x_dtype: DTypeLike | None = None,
    kernel_dtype: DTypeLike | None = None,
    bias_dtype: DTypeLike | None = None,
    stride: IntPair = 1,
    padding: PaddingLike = "VALID",
    dilation: IntPair = 1,
    groups: IntLike = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    precision: PrecisionLike = None,
    preferred_element_type: DTypeLike | None = None,
    input_dilation: IntPair = 1,
    transposed_ok: bool = False,
) -> ConvSpec:
    """Check conv2d's arguments and resolve them into a ConvSpec.

    dtypes may be None when only shapes matter (conv2d_flops). Mixed input
    dtypes follow JAX's type promotion (jnp.result_type), so under
    jax_numpy_dtype_promotion='strict' they are refused.

    transposed_ok: whether the caller runs what the lowerings alone do not:
    input (lhs) dilation and negative padding amounts (crops), lax's two
    ingredients of a transposed convolution. conv2d does (jconv/_subpixel.py);
    the sharded functions, which plan on plain specs, do not, and refuse them here.
    """
    check_layout(layout)
    info = LAYOUT_INFO[layout]
    x_shape, kernel_shape = check_shape("x", x_shape), check_shape("kernel", kernel_shape)
    if len(x_shape) not in (3, 4):
        unbatched = "(C, H, W)" if layout == "NCHW" else "(H, W, C)"
        raise ValueError(
            f"x must have shape {layout} (4 dimensions) or unbatched {unbatched} "
            f"(3 dimensions) for layout {layout!r}, got shape {x_shape}"
        )
    batched = len(x_shape) == 4
    xb = x_shape if batched else (1, *x_shape)
    if len(kernel_shape) != 4:
        raise ValueError(
            f"kernel must have shape {info.kernel} (4 dimensions) for layout {layout!r}, "
            f"got shape {kernel_shape}"
        )
    n, c = xb[0], xb[info.channel_axis]
    h, w = (xb[a] for a in info.spatial_axes)
    o, ci, kh, kw = (kernel_shape[a] for a in info.kernel_to_oihw)
    groups = check_groups(groups)
    if c % groups or o % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels of x ({c}, shape "
            f"{x_shape}) and the output channels of the kernel ({o}, shape {kernel_shape})"
        )
    if ci * groups != c:
        raise ValueError(
            f"channel mismatch: x has {c} channels (shape {x_shape}, layout {layout!r}) but "
            f"the kernel expects {ci} per group x {groups} groups = {ci * groups} "
            f"(kernel shape {kernel_shape}, layout {info.kernel})"
        )
    if min(kh, kw) < 1 or min(c, o) < 1:
        raise ValueError(
            f"kernel {kernel_shape} must have at least one tap and one channel in each direction"
        )
    stride = int_pair("stride", stride, 1)
    dilation = int_pair("dilation", dilation, 1)
    input_dilation = int_pair("input_dilation", input_dilation, 1)
    window = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    if input_dilation != (1, 1):
        _check_input_dilation(input_dilation, padding, padding_mode, transposed_ok)
    crop = transposed_ok and padding_mode == "zeros"
    if not crop and transposed_ok and _has_negative(padding):
        raise ValueError(
            f"negative padding (a crop) needs padding_mode='zeros', got padding={padding!r} "
            f"with padding_mode={padding_mode!r}"
        )
    pads = resolve_padding(padding, (h, w), window, stride, crop=crop)
    check_padding_mode(padding_mode, pads, (h, w))
    dilated = ((h - 1) * input_dilation[0] + 1, (w - 1) * input_dilation[1] + 1)
    for axis, (lo, hi), size in zip(("height", "width"), pads, dilated):
        if max(-lo, 0) + max(-hi, 0) >= size:
            raise ValueError(
                f"padding {(lo, hi)} on the {axis} axis crops all of the input's {size} "
                f"pixels there (input {(h, w)}, input_dilation {input_dilation})"
            )
    hp, wp = dilated[0] + sum(pads[0]), dilated[1] + sum(pads[1])
    if hp < window[0] or wp < window[1]:
        raise ValueError(
            f"the kernel window {window} (kernel {(kh, kw)}, dilation {dilation}) is larger "
            f"than the padded input {(hp, wp)} (input {(h, w)}, input_dilation "
            f"{input_dilation}, padding {pads}): the output would be empty"
        )
    if bias_shape is not None and tuple(bias_shape) != (o,):
        raise ValueError(
            f"bias must have shape (O,) = ({o},), one value per output channel; "
            f"got shape {tuple(bias_shape)}"
        )
    dtype = None
    if x_dtype is not None and kernel_dtype is not None:
        xd = check_float_dtype("x", x_dtype)
        kd = check_float_dtype("kernel", kernel_dtype)
        dtype = np.dtype(jnp.result_type(xd, kd))
    if bias_dtype is not None:
        check_float_dtype("bias", bias_dtype)
    if preferred_element_type is not None:
        preferred_element_type = check_float_dtype("preferred_element_type", preferred_element_type)
        if dtype is not None and preferred_element_type.itemsize < dtype.itemsize:
            raise TypeError(  # as lax: accumulating in fewer bits than the inputs is refused
                f"preferred_element_type {preferred_element_type} must not be narrower than "
                f"the inputs' dtype {dtype}"
            )
    if bias_dtype is not None and dtype is not None:
        out_dtype = preferred_element_type or dtype
        try:  # the bias is added as `y + bias` adds it, so refused where that is
            jnp.result_type(out_dtype, bias_dtype)
        except jax.dtypes.TypePromotionError as e:
            raise TypeError(
                f"bias has dtype {np.dtype(bias_dtype)} but the convolution gives {out_dtype}, "
                "and jax_numpy_dtype_promotion='strict' refuses to add them: cast the bias"
            ) from e
    return ConvSpec(
        layout=layout,
        batched=batched,
        n=n,
        c=c,
        height=h,
        width=w,
        o=o,
        kh=kh,
        kw=kw,
        groups=groups,
        stride=stride,
        dilation=dilation,
        pads=pads,
        padding_mode=padding_mode,
        precision=check_precision(precision),
        preferred_element_type=preferred_element_type,
        dtype=dtype,
        input_dilation=input_dilation,
    )


def _has_negative(padding: PaddingLike) -> bool:
    """Whether an explicit padding form holds a negative amount (before it is checked)."""
    if isinstance(padding, str):
        return False
    values: Sequence[object] = padding if isinstance(padding, Sequence) else [padding]
    flat = [u for v in values for u in (v if isinstance(v, Sequence) else [v])]
    return any(is_int(u) and operator.index(u) < 0 for u in flat)


def _check_input_dilation(
    input_dilation: tuple[int, int], padding: PaddingLike, padding_mode: str, transposed_ok: bool
) -> None:
    """What input dilation asks of the other arguments (lax's rules, and the callers')."""
    if not transposed_ok:
        raise ValueError(
            f"input_dilation={input_dilation} is not supported here: this function splits "
            "plain convolutions only; use jconv.conv2d for input (lhs) dilation"
        )
    if isinstance(padding, str):
        raise ValueError(  # lax refuses string padding with lhs_dilation too
            f"padding={padding!r}: with input_dilation={input_dilation} give explicit amounts "
            "(an int, a pair or ((top, bottom), (left, right))), as lax.conv_general_dilated "
            "asks; jconv.conv_transpose2d takes 'SAME' and 'VALID' in lax.conv_transpose's sense"
        )
    if padding_mode != "zeros":
        raise ValueError(
            f"padding_mode={padding_mode!r}: input_dilation={input_dilation} pads with zeros "
            "only (the dilated input's gaps are zeros; so are torch's ConvTranspose2d borders)"
        )


@dataclasses.dataclass(frozen=True)
class TransposeSpec:
    """conv_transpose2d's arguments resolved into the conv2d that computes it."""

    input_dilation: tuple[int, int]  # the stride of the transposed convolution
    dilation: tuple[int, int]
    pads: Pads  # conv2d's padding of the dilated input; negative amounts crop
    out_hw: tuple[int, int]


def conv_transpose_pads(
    window: int, stride: int, padding: tuple[int, int] | str, output_padding: int
) -> tuple[int, int]:
    """conv2d's (low, high) padding of the dilated input for one axis of a transposed conv.

    padding is the forward convolution's: explicit (low, high) amounts leave
    ``window - 1 - amount`` on each side (torch's ConvTranspose2d, and
    lax.conv_transpose with use_consistent_padding); 'SAME' and 'VALID' are
    lax.conv_transpose's. output_padding is added at the high end.
    """
    if not isinstance(padding, str):
        low, total = window - 1 - padding[0], 2 * (window - 1) - padding[0] - padding[1]
    elif padding == "SAME":
        total = window + stride - 2
        low = window - 1 if stride > window - 1 else -(-total // 2)
    elif padding == "VALID":
        total = window + stride - 2 + max(window - stride, 0)
        low = window - 1
    else:
        raise ValueError(f"padding must be 'SAME', 'VALID' or (low, high), got {padding!r}")
    return low, total - low + output_padding


def check_transpose_args(
    x_shape: ShapeLike,
    kernel_shape: ShapeLike,
    *,
    stride: IntPair,
    padding: PaddingLike,
    output_padding: IntPair,
    dilation: IntPair,
    groups: IntLike,
    layout: str,
    transpose_kernel: bool,
) -> TransposeSpec:
    """Check what conv_transpose2d adds to conv2d's arguments; conv2d checks the rest.

    With transpose_kernel, the kernel is the forward convolution's ('NCHW'
    (C, O/groups, kh, kw), 'NHWC' (kh, kw, O/groups, C)): its C must be x's,
    and divisible by groups. Otherwise it is conv2d's, which conv2d checks.
    """
    check_layout(layout)
    if not isinstance(transpose_kernel, (bool, np.bool_)):
        raise TypeError(f"transpose_kernel must be a bool, got {transpose_kernel!r}")
    info = LAYOUT_INFO[layout]
    x_shape, kernel_shape = check_shape("x", x_shape), check_shape("kernel", kernel_shape)
    if len(x_shape) not in (3, 4) or len(kernel_shape) != 4:
        raise ValueError(
            f"x must have 3 or 4 dimensions and the kernel 4 for layout {layout!r}; got "
            f"shapes {x_shape} and {kernel_shape}"
        )
    xb = x_shape if len(x_shape) == 4 else (1, *x_shape)
    if transpose_kernel:
        groups = check_groups(groups)
        c = xb[info.channel_axis]
        kc = kernel_shape[0 if layout == "NCHW" else 3]
        if kc != c or c % groups:
            order = "(C, O/groups, kh, kw)" if layout == "NCHW" else "(kh, kw, O/groups, C)"
            raise ValueError(
                f"the kernel of a transposed convolution (transpose_kernel=True) is {order} "
                f"for layout {layout!r}, its C that of x ({c}, shape {x_shape}) and divisible "
                f"by groups={groups}; got kernel shape {kernel_shape}"
            )
    (ah, aw), (_, _, ih, iw) = info.spatial_axes, info.kernel_to_oihw
    hw = (xb[ah], xb[aw])
    stride_hw = int_pair("stride", stride, 1)
    dilation_hw = int_pair("dilation", dilation, 1)
    extra_hw = int_pair("output_padding", output_padding, 0)
    for axis, op, s, d in zip(("height", "width"), extra_hw, stride_hw, dilation_hw):
        if op >= max(s, d):  # torch's rule: the extra rows would hold no input pixel's term
            raise ValueError(
                f"output_padding {extra_hw} on the {axis} axis must be smaller than "
                f"the stride {s} or the dilation {d} there"
            )
    window = (
        (kernel_shape[ih] - 1) * dilation_hw[0] + 1,
        (kernel_shape[iw] - 1) * dilation_hw[1] + 1,
    )
    forward: tuple[tuple[int, int] | str, tuple[int, int] | str]
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(
                "padding of a transposed convolution must be 'SAME', 'VALID' (as in "
                "lax.conv_transpose), an int, a pair (ph, pw) or ((top, bottom), (left, "
                f"right)) (the forward convolution's, as in torch); got {padding!r}"
            )
        forward = (padding.upper(), padding.upper())
    else:
        forward = resolve_padding(padding, hw, window, stride_hw)
    pads_h = conv_transpose_pads(window[0], stride_hw[0], forward[0], extra_hw[0])
    pads_w = conv_transpose_pads(window[1], stride_hw[1], forward[1], extra_hw[1])
    out_h, out_w = (
        (n - 1) * s + 1 + lo + hi - k + 1
        for n, s, (lo, hi), k in zip(hw, stride_hw, (pads_h, pads_w), window)
    )
    if min(out_h, out_w) < 1:
        raise ValueError(
            f"the output of this transposed convolution would be empty: {(out_h, out_w)} "
            f"pixels (input {hw}, stride {stride_hw}, kernel window {window}, padding "
            f"{padding!r}, output_padding {extra_hw})"
        )
    return TransposeSpec(stride_hw, dilation_hw, (pads_h, pads_w), (out_h, out_w))
