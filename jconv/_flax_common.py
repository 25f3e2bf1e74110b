"""What jconv.nnx and jconv.linen share: Flax's Conv and ConvTranspose as pure functions.

Flax's Conv takes channels-last inputs with any number of leading batch axes,
a kernel (*kernel_size, in_features // groups, out_features) and a padding in
one of Flax's forms; it calls lax.conv_general_dilated (ConvTranspose:
lax.conv_transpose). These functions turn the same arguments into one call of
jconv.conv2d(..., layout='NHWC'), so that the modules stay thin parameter
holders, written once for nnx and once for linen:

- at construction: `canonical_kernel_size`, `check_supported` (what jconv can
  run: 1-D and 2-D convolutions), `kernel_shape` (the kernel Param's shape,
  groups checked);
- at call: `canonical_padding` (Flax's padding forms and errors, before any
  parameter is read), `check_mask` and `apply_mask`, then `flax_conv`, the
  convolution itself for a kernel already masked and promoted (input dilation
  included), or `flax_conv_transpose`; `lax_partial_keywords` tells a
  conv_general_dilated override that still runs jconv from a custom one, which
  `custom_flax_conv` calls as Flax does;
- for any layer on channels-last inputs: `flatten_batch` and `flax_padding`
  (Flax's own borders filled, negative pads cropped).

The argument rules themselves (what an int is, which padding strings lax
knows, how narrow preferred_element_type may be) are jconv._checks', the ones
conv2d applies. Flax's errors are kept, type and moment: what Flax (or lax
under it) refuses at call time, these refuse at call time with the same
exception type. Bools are refused where an int is asked for (Flax would take
True as 1).
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jconv._checks import PADDING_STRINGS, conv_transpose_pads, is_int
from jconv._conv2d import check_method, conv2d
from jconv._padding import zero_pad_or_crop
from jconv._typing import Array, DTypeLike, Shape

FlaxPadding = str | int | Sequence[int | tuple[int, int]]  # what Flax's Conv accepts
CanonicalPadding = str | list[tuple[int, int]]  # a string, or (low, high) per spatial axis
IntsLike = int | Sequence[int] | None  # Flax's strides and dilations: None means 1

SUPPORTED_RANKS = (1, 2)
BORDER_MODES = {"CIRCULAR": "wrap", "REFLECT": "reflect"}  # Flax's own strings, as jnp.pad modes

# Flax's Conv defaults (the same functions in flax.nnx.initializers and flax.linen.initializers).
default_kernel_init = jax.nn.initializers.lecun_normal()
default_bias_init = jax.nn.initializers.zeros


def canonical_kernel_size(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """An int is a 1-D kernel size; anything else is made a tuple (TypeError if it cannot be)."""
    if isinstance(kernel_size, int):
        return (kernel_size,)
    return tuple(kernel_size)


def broadcast_ints(name: str, value: IntsLike, rank: int) -> tuple[int, ...]:
    """Flax's strides and dilations: None is 1, an int is repeated, a sequence is taken as is."""
    if value is None:
        value = 1
    if is_int(value):
        return (operator.index(value),) * rank
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
    if len(value) != rank:
        raise ValueError(
            f"{name} must be an int or a sequence of {rank} ints (one per spatial axis of a "
            f"{rank}-D convolution), got {value!r}"
        )
    if not all(is_int(v) for v in value):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {value!r}")
    return tuple(operator.index(v) for v in value)


# The keywords of a functools.partial of lax.conv_general_dilated that become conv2d's own.
JCONV_KEYWORDS = ("precision", "preferred_element_type")


def lax_partial_keywords(fn: Any) -> dict[str, Any] | None:
    """The keywords a conv_general_dilated override adds to jconv's call, or None if custom.

    None and lax.conv_general_dilated itself add nothing ({}); so does a
    ``functools.partial(jax.lax.conv_general_dilated, ...)`` whose keywords are
    among JCONV_KEYWORDS (how Flax's own tests pass preferred_element_type to
    linen.Conv), which gives them. Anything else (another function, a partial
    with positional arguments or other keywords) is a custom convolution: None.
    """
    if fn is None or fn is jax.lax.conv_general_dilated:
        return {}
    if (
        isinstance(fn, functools.partial)
        and fn.func is jax.lax.conv_general_dilated
        and not fn.args
        and set(fn.keywords) <= set(JCONV_KEYWORDS)
    ):
        return dict(fn.keywords)
    return None


def check_supported(
    kernel_size: tuple[int, ...],
    method: str,
    *,
    input_dilation: IntsLike = 1,
) -> None:
    """Refuse, at construction, the Flax arguments that jconv cannot run: 3-D convolutions."""
    check_method(method)
    if len(kernel_size) not in SUPPORTED_RANKS:
        raise NotImplementedError(
            f"jconv runs 1-D and 2-D convolutions only (kernel_size of length 1 or 2); got "
            f"kernel_size={kernel_size!r}, a {len(kernel_size)}-D convolution. Use Flax's own "
            "Conv for it."
        )
    if input_dilation is None:
        input_dilation = 1
    dilations = input_dilation if isinstance(input_dilation, Sequence) else (input_dilation,)
    if any(isinstance(d, (bool, np.bool_)) for d in dilations):
        raise TypeError(
            f"input_dilation must be an int or a sequence of ints, got {input_dilation!r}"
        )


def kernel_shape(
    kernel_size: tuple[int, ...],
    in_features: int,
    out_features: int,
    feature_group_count: int,
    *,
    inputs_shape: Shape | None = None,
) -> tuple[int, ...]:
    """The kernel Param's shape, (*kernel_size, in_features // groups, out_features).

    Flax asserts that the groups divide in_features; this raises a ValueError
    naming both (and the inputs' shape, where in_features was read from them).
    A zero feature_group_count raises ZeroDivisionError, as in Flax.
    """
    if in_features % feature_group_count:
        where = "" if inputs_shape is None else f" (the last axis of inputs {inputs_shape})"
        raise ValueError(
            f"in_features={in_features}{where} must be divisible by "
            f"feature_group_count={feature_group_count}"
        )
    return (*kernel_size, in_features // feature_group_count, out_features)


def check_mask(mask: Array | None, kernel_shape: tuple[int, ...]) -> None:
    """Flax's rule, and its message: a mask has the kernel's shape."""
    if mask is not None and mask.shape != kernel_shape:
        raise ValueError(
            "Mask needs to have the same shape as weights. "
            f"Shapes are: {mask.shape}, {kernel_shape}"
        )


def apply_mask(kernel: Array, mask: Array | None) -> Array:
    """The kernel with the masked-out taps zeroed (masked convolution), as Flax applies it."""
    return kernel if mask is None else kernel * mask


def canonical_padding(padding: FlaxPadding, kernel_size: tuple[int, ...]) -> CanonicalPadding:
    """Flax's padding forms: a string, an int for every side, or one int or (low, high) per axis.

    Raises as Flax does: ValueError for a malformed padding or for 'CAUSAL' on
    more than one spatial axis, RuntimeError (lax's) for an unknown string.
    """
    rank = len(kernel_size)
    if isinstance(padding, str):
        if padding == "CAUSAL" and rank != 1:
            raise ValueError("Causal padding is only implemented for 1D convolutions.")
        if padding not in (*BORDER_MODES, "CAUSAL") and padding.upper() not in PADDING_STRINGS:
            raise RuntimeError(
                f"Unrecognized padding type: expected 'VALID', 'SAME', 'SAME_LOWER' (any case), "
                f"or 'CIRCULAR', 'REFLECT', 'CAUSAL' (upper case), got {padding!r}."
            )
        return padding
    if isinstance(padding, bool):
        raise ValueError(f"padding must be a string, an int or a sequence, not a bool: {padding!r}")
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    if isinstance(padding, Sequence) and len(padding) == rank:
        pads = []
        for p in padding:
            if isinstance(p, int):
                pads.append((p, p))
            elif isinstance(p, tuple) and len(p) == 2:
                pads.append(p)
            else:
                break
        else:
            if not all(is_int(p) for pair in pads for p in pair):
                raise ValueError(f"padding amounts must be ints (not bools), got {padding!r}")
            return [(operator.index(lo), operator.index(hi)) for lo, hi in pads]
    raise ValueError(
        f"Invalid padding format: {padding}, should be str, int, or a sequence of len {rank} "
        "where each element is an int or pair of ints."
    )


def canonical_transpose_padding(
    padding: FlaxPadding, kernel_size: tuple[int, ...]
) -> CanonicalPadding:
    """ConvTranspose's padding: strings as given (`transpose_pads` reads them), else as Conv's."""
    return padding if isinstance(padding, str) else canonical_padding(padding, kernel_size)


def dilated_window(kernel: Array, dilation: tuple[int, ...]) -> tuple[int, ...]:
    """The spatial extent of a channels-last kernel (*kernel_size, I, O) at this dilation."""
    return tuple((k - 1) * d + 1 for k, d in zip(kernel.shape[:-2], dilation, strict=True))


def flatten_batch(inputs: Array, rank: int) -> tuple[Array, Shape]:
    """(*batch, *spatial, C) -> (N, *spatial, C), N the product of the batch axes (1 if none).

    Returns the flat array and the batch shape that `y.reshape((*batch, *y.shape[1:]))`
    restores. Flax flattens the same way.
    """
    n_batch = inputs.ndim - (rank + 1)
    if n_batch < 0:
        spatial = "L" if rank == 1 else "H, W"
        raise ValueError(
            f"a {rank}-D convolution takes inputs of shape (*batch, {spatial}, features); got "
            f"shape {inputs.shape}"
        )
    batch_shape = inputs.shape[:n_batch]
    return inputs.reshape((math.prod(batch_shape), *inputs.shape[n_batch:])), batch_shape


def flax_padding(
    x: Array, padding: CanonicalPadding, window: tuple[int, ...]
) -> tuple[Array, str | list[tuple[int, int]]]:
    """Fill Flax's own borders (CIRCULAR, REFLECT, CAUSAL) and crop negative pads.

    x: (N, *spatial, C); window: the dilated kernel size per spatial axis.
    Returns x and the padding left for conv2d: a lax string or non-negative
    (low, high) pairs. CIRCULAR and REFLECT pad ((w - 1) // 2, w // 2) for the
    dilated window w of each axis, whatever the stride, as Flax does, with
    jnp.pad (which wraps or reflects more than once if it must).
    """
    rank = len(window)
    if isinstance(padding, str):
        if padding in BORDER_MODES:
            widths = [(0, 0), *(((w - 1) // 2, w // 2) for w in window), (0, 0)]
            return jnp.pad(x, widths, mode=BORDER_MODES[padding]), [(0, 0)] * rank
        if padding == "CAUSAL":
            return x, [(window[0] - 1, 0)]
        if padding.upper() == "VALID":
            return x, [(0, 0)] * rank
        return x, padding.upper()
    if any(min(p) < 0 for p in padding):  # lax crops where a pad is negative; so does lax.pad
        x = zero_pad_or_crop(x, [(0, 0), *((min(lo, 0), min(hi, 0)) for lo, hi in padding), (0, 0)])
    return x, [(max(lo, 0), max(hi, 0)) for lo, hi in padding]


def flax_conv(
    inputs: Array,
    kernel: Array,
    bias: Array | None,
    *,
    padding: CanonicalPadding,
    strides: IntsLike = 1,
    input_dilation: IntsLike = 1,
    kernel_dilation: IntsLike = 1,
    feature_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: DTypeLike | None = None,
    method: str = "auto",
    out_sharding: Any = None,
) -> Array:
    """Flax's Conv applied with jconv.conv2d, for a 1-D or 2-D kernel.

    Args:
      inputs: (*batch, L, C) for a 1-D kernel, (*batch, H, W, C) for a 2-D one;
        any number of batch axes, none included.
      kernel: (k, C // groups, O) or (kh, kw, C // groups, O), already masked and
        in the dtype to compute in (Flax's promote_dtype is the module's job).
      bias: (O,) or None.
      padding: from `canonical_padding`. With input dilation, explicit amounts
        only (lax refuses strings there, and so Flax's Conv does).
      strides, input_dilation, kernel_dilation: None, an int, or one int per
        spatial axis.
      out_sharding: nnx.Conv's explicit-sharding argument: the sharding (a
        PartitionSpec under jax.set_mesh, or a NamedSharding) of the result with
        its batch axes flattened into one, (N, *spatial, O), handed to conv2d
        (which it lets take a kernel split across devices, as lax does).

    Returns:
      (*batch, mL, O) or (*batch, mh, mw, O): lax.conv_general_dilated's result
      for the same arguments, plus bias.
    """
    rank = kernel.ndim - 2
    x, batch_shape = flatten_batch(inputs, rank)
    strides = broadcast_ints("strides", strides, rank)
    dilation = broadcast_ints("kernel_dilation", kernel_dilation, rank)
    lhs_dilation = broadcast_ints("input_dilation", input_dilation, rank)
    if min(dilation) < 1 or min(lhs_dilation) < 1:  # conv2d's rule, lax's exception type
        raise TypeError(
            f"All dilations must be positive, got input_dilation={lhs_dilation}, "
            f"kernel_dilation={dilation}"
        )
    window = dilated_window(kernel, dilation)
    pads: str | list[tuple[int, int]]
    if all(d == 1 for d in lhs_dilation):
        x, pads = flax_padding(x, padding, window)
    elif isinstance(padding, str):
        raise ValueError(  # lax's refusal, which Flax's Conv passes on (after its own padding)
            f"padding={padding!r} with input_dilation={lhs_dilation}: string padding is not "
            "implemented for input-dilated (transposed) convolutions, as in lax; give explicit "
            "(low, high) amounts, or use ConvTranspose"
        )
    else:  # negative amounts crop the dilated input: conv2d does it, not flax_padding
        pads = list(padding)
    if rank == 1:  # a 1-D convolution is a 2-D one over a unit height
        x, kernel = x[:, None], kernel[None]
        strides, dilation, window = (1, *strides), (1, *dilation), (1, *window)
        lhs_dilation = (1, *lhs_dilation)
        if not isinstance(pads, str):
            pads = [(0, 0), *pads]
    # An axis where the window is wider than the padded input has no output in lax, and conv2d
    # refuses such an axis: it runs with that axis zero-extended to one window, one output row
    # or column that is then dropped, so that conv2d still checks every argument.
    empty_axes = []
    if not isinstance(pads, str):
        for axis, ((lo, hi), size, w, d) in enumerate(
            zip(pads, x.shape[1:-1], window, lhs_dilation, strict=True)
        ):
            size = (size - 1) * d + 1
            if lo + size + hi < w:
                empty_axes.append(axis)
                pads[axis] = (lo, w - lo - size)
    # conv2d adds the bias in the output's dtype; when Flax's `y + bias` would widen, add it here.
    out_dtype = preferred_element_type or jnp.result_type(x, kernel)
    fuse_bias = bias is None or jnp.result_type(out_dtype, bias) == np.dtype(out_dtype)
    y = conv2d(
        x,
        kernel,
        bias if fuse_bias else None,
        stride=strides,
        padding=pads if isinstance(pads, str) else tuple(pads),
        dilation=dilation,
        groups=feature_group_count,
        layout="NHWC",
        precision=precision,
        preferred_element_type=preferred_element_type,
        method=method,
        input_dilation=lhs_dilation,
        out_sharding=out_sharding if rank == 2 else _unit_height(out_sharding),
    )
    for axis in empty_axes:
        y = jax.lax.slice_in_dim(y, 0, 0, axis=1 + axis)
    if rank == 1:
        y = y[:, 0]
    if bias is not None and not fuse_bias:
        y = y + bias
    return y.reshape((*batch_shape, *y.shape[1:]))


def _unit_height(out_sharding: Any) -> Any:
    """A 1-D convolution's out_sharding, (N, L, O), for the (N, 1, L, O) result conv2d gives."""
    if out_sharding is None:
        return None
    named = isinstance(out_sharding, NamedSharding)
    spec = tuple(out_sharding.spec if named else out_sharding)
    spec += (None,) * (3 - len(spec))
    unit = PartitionSpec(spec[0], None, *spec[1:])
    return NamedSharding(out_sharding.mesh, unit) if named else unit


def lax_padding(
    x: Array, padding: CanonicalPadding, window: tuple[int, ...]
) -> tuple[Array, str | list[tuple[int, int]]]:
    """Flax's Conv padding as it hands it to lax: its own borders filled, the rest as given.

    x: (N, *spatial, C). CIRCULAR and REFLECT pad x (as `flax_padding` does) and
    CAUSAL pads the start, leaving 'VALID'; other strings and explicit amounts
    (negative ones included) are passed on unchanged.
    """
    if isinstance(padding, str) and (padding in BORDER_MODES or padding == "CAUSAL"):
        x, pads = flax_padding(x, padding, window)
        if padding == "CAUSAL":
            x = jnp.pad(x, [(0, 0), *pads, (0, 0)])
        return x, "VALID"
    return x, padding


def custom_flax_conv(
    conv_general_dilated: Any,
    inputs: Array,
    kernel: Array,
    bias: Array | None,
    *,
    padding: CanonicalPadding,
    strides: IntsLike = 1,
    input_dilation: IntsLike = 1,
    kernel_dilation: IntsLike = 1,
    feature_group_count: int = 1,
    precision: Any = None,
    conv_kwargs: dict[str, Any] | None = None,
) -> Array:
    """Flax's Conv with a custom conv_general_dilated, called as Flax calls it.

    jconv's lowerings are bypassed: the function gets Flax's arguments
    (channels-last dimension numbers, padding, strides, dilations, groups,
    precision, and conv_kwargs: nnx's preferred_element_type and out_sharding)
    and its result gets the bias. Same shapes as `flax_conv`.
    """
    rank = kernel.ndim - 2
    x, batch_shape = flatten_batch(inputs, rank)
    strides = broadcast_ints("strides", strides, rank)
    dilation = broadcast_ints("kernel_dilation", kernel_dilation, rank)
    window = dilated_window(kernel, dilation)
    x, pads = lax_padding(x, padding, window)
    spatial = tuple(range(1, rank + 1))
    numbers = jax.lax.ConvDimensionNumbers(  # channels last: (N, *spatial, C), (*k, I, O)
        (0, rank + 1, *spatial), (rank + 1, rank, *range(rank)), (0, rank + 1, *spatial)
    )
    y = conv_general_dilated(
        x,
        kernel,
        strides,
        pads,
        lhs_dilation=broadcast_ints("input_dilation", input_dilation, rank),
        rhs_dilation=dilation,
        dimension_numbers=numbers,
        feature_group_count=feature_group_count,
        precision=precision,
        **(conv_kwargs or {}),
    )
    if bias is not None:
        y = y + bias
    return y.reshape((*batch_shape, *y.shape[1:]))


def transpose_pads(
    padding: CanonicalPadding, window: tuple[int, ...], strides: tuple[int, ...]
) -> str | list[tuple[int, int]]:
    """Flax's ConvTranspose padding -> conv2d's padding of the dilated input.

    'SAME' and 'VALID' (exactly so written) and 'CIRCULAR' (computed 'VALID',
    then wrapped) as lax.conv_transpose reads them, per axis from the dilated
    window and the stride (`jconv._checks.conv_transpose_pads`); explicit
    amounts pad the dilated input as they are. Any other string is passed on,
    as lax.conv_transpose passes it to lax (which refuses it with strides).
    """
    if isinstance(padding, str):
        mode = "VALID" if padding == "CIRCULAR" else padding
        if mode not in ("SAME", "VALID"):
            if any(s != 1 for s in strides):
                raise ValueError(
                    f"padding={padding!r}: a transposed convolution takes 'SAME', 'VALID', "
                    "'CIRCULAR' or explicit (low, high) amounts (lax refuses other strings "
                    "with input dilation)"
                )
            return mode
        return [conv_transpose_pads(w, s, mode, 0) for w, s in zip(window, strides)]
    return list(padding)


def wrap_circular(
    y: Array, in_spatial: tuple[int, ...], strides: tuple[int, ...], transpose_kernel: bool
) -> Array:
    """Fold a transposed convolution's output onto the period in_size * stride, per axis.

    y: (N, *spatial, O). Output pixel m goes to (m + low) mod period, summed: the
    circular transposed convolution of Flax's ConvTranspose(padding='CIRCULAR'),
    which centres the output within an odd number of periods, the odd pixel on
    the left (transpose_kernel: on the right).
    """
    for axis, (size, s) in enumerate(zip(in_spatial, strides, strict=True), start=1):
        period = size * s
        extra = (period - y.shape[axis]) % (2 * period)  # to an odd number of periods
        low = extra // 2 if transpose_kernel else extra - extra // 2
        high = -(y.shape[axis] + low) % period
        widths = [(0, 0)] * y.ndim
        widths[axis] = (low, high)
        y = jnp.pad(y, widths)
        y = y.reshape((*y.shape[:axis], -1, period, *y.shape[axis + 1 :])).sum(axis=axis)
    return y


def flax_conv_transpose(
    inputs: Array,
    kernel: Array,
    bias: Array | None,
    *,
    padding: CanonicalPadding,
    strides: IntsLike = 1,
    kernel_dilation: IntsLike = 1,
    transpose_kernel: bool = False,
    precision: Any = None,
    preferred_element_type: DTypeLike | None = None,
    method: str = "auto",
) -> Array:
    """Flax's ConvTranspose applied with jconv.conv2d (input_dilation = strides), 1-D or 2-D.

    Args:
      inputs: (*batch, L, C) or (*batch, H, W, C).
      kernel: (*kernel_size, C, O), or with transpose_kernel (*kernel_size, O, C)
        (then flipped and its channel axes swapped, as lax.conv_transpose does),
        already masked and promoted.
      bias: (O,) or None, added last, as Flax does.
      padding: from `canonical_padding`; see `transpose_pads`.

    Returns:
      (*batch, *spatial_out, O): lax.conv_transpose's result (wrapped for 'CIRCULAR').
    """
    rank = kernel.ndim - 2
    x, batch_shape = flatten_batch(inputs, rank)
    strides = broadcast_ints("strides", strides, rank)
    dilation = broadcast_ints("kernel_dilation", kernel_dilation, rank)
    if min(dilation) < 1 or min(strides) < 1:
        raise TypeError(f"strides {strides} and kernel_dilation {dilation} must be positive")
    if transpose_kernel:
        kernel = jnp.flip(kernel, tuple(range(rank))).swapaxes(-1, -2)
    window = dilated_window(kernel, dilation)
    pads = transpose_pads(padding, window, strides)
    in_spatial = x.shape[1:-1]
    if rank == 1:
        x, kernel = x[:, None], kernel[None]
        strides, dilation = (1, *strides), (1, *dilation)
        if not isinstance(pads, str):
            pads = [(0, 0), *pads]
    y = conv2d(
        x,
        kernel,
        padding=pads if isinstance(pads, str) else tuple(pads),
        dilation=dilation,
        layout="NHWC",
        precision=precision,
        preferred_element_type=preferred_element_type,
        method=method,
        input_dilation=strides,
    )
    if rank == 1:
        y = y[:, 0]
    if padding == "CIRCULAR":
        y = wrap_circular(y, in_spatial, strides[-rank:], transpose_kernel)
    if bias is not None:
        y = y + bias
    return y.reshape((*batch_shape, *y.shape[1:]))
