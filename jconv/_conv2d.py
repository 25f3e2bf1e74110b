"""conv2d: jconv's production entry point, dispatching to one of its lowerings."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jconv._auto import (
    BANDED_GRADIENTS,
    GROUPED_ELEMENTWISE,
    PHASES,
    TAPS_BANDED_GRADIENTS,
    TAPS_EIGEN_GRADIENTS,
    WINOGRAD_1D,
    WINOGRAD_EIGEN_GRADIENTS,
    XLA_EIGEN,
    auto_methods,
    choose_method,
    choose_phase_method,
    cpu_compute_dtype,
)
from jconv._checks import ConvSpec, check_conv_args
from jconv._layouts import LAYOUT_INFO
from jconv._lowering import Forward, explicit_spec
from jconv._method_banded import (
    conv_banded,
    conv_banded_gradients,
    conv_taps_banded_gradients,
)
from jconv._method_im2col import conv_im2col
from jconv._method_pallas import conv_pallas
from jconv._method_taps import conv_taps
from jconv._method_vmap import conv_vmap
from jconv._method_winograd import conv_winograd
from jconv._method_winograd_1d import conv_winograd_1d
from jconv._method_xla import conv_xla
from jconv._method_xla_eigen import (
    conv_grouped_elementwise,
    conv_taps_eigen_gradients,
    conv_winograd_eigen_gradients,
    conv_xla_eigen,
)
from jconv._subpixel import conv_subpixel, crop_undilated
from jconv._typing import Array, ArrayLike, DTypeLike, IntLike, IntPair, PaddingLike, PrecisionLike

LOWERINGS: dict[str, Forward] = {  # (batched x, OIHW kernel, spec) -> y
    "vmap": conv_vmap,
    "taps": conv_taps,
    "im2col": conv_im2col,
    "banded": conv_banded,
    "winograd": conv_winograd,
    "xla": conv_xla,
    "pallas": conv_pallas,
}
# Lowerings that add the bias themselves, in a kernel's epilogue: (x, w, spec, bias) -> y.
BIAS_LOWERINGS: dict[str, Callable[..., Array]] = {"pallas": conv_pallas}

METHODS: tuple[str, ...] = ("auto", *LOWERINGS)
# What 'auto''s rules may pick: the methods, and lowerings that only a rule picks
# (jconv/_auto.py).
RULE_LOWERINGS: dict[str, Forward] = {
    **LOWERINGS,
    BANDED_GRADIENTS: conv_banded_gradients,
    TAPS_BANDED_GRADIENTS: conv_taps_banded_gradients,
    XLA_EIGEN: conv_xla_eigen,
    TAPS_EIGEN_GRADIENTS: conv_taps_eigen_gradients,
    GROUPED_ELEMENTWISE: conv_grouped_elementwise,
    WINOGRAD_EIGEN_GRADIENTS: conv_winograd_eigen_gradients,
    WINOGRAD_1D: conv_winograd_1d,
}


def check_method(method: str) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def conv2d(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: IntPair = 1,
    padding: PaddingLike = "VALID",
    dilation: IntPair = 1,
    groups: IntLike = 1,
    padding_mode: str = "zeros",
    layout: str = "NCHW",
    precision: PrecisionLike = None,
    preferred_element_type: DTypeLike | None = None,
    method: str = "auto",
    input_dilation: IntPair = 1,
    out_sharding: Any = None,
) -> Array:
    """2-D convolution (cross-correlation) with many input and output channels.

    For each output channel o, ``y[o] = sum_i x[i] ⋆ kernel[o, i] + bias[o]``,
    the lesson's construction, with stride, padding, kernel dilation, groups
    and input dilation (the transposed convolution's ingredient).

    Args:
      x: layout 'NCHW': (N, C, H, W) or unbatched (C, H, W);
        layout 'NHWC': (N, H, W, C) or unbatched (H, W, C).
      kernel: 'NCHW': (O, C/groups, kh, kw) (the lesson's and PyTorch's order);
        'NHWC': (kh, kw, C/groups, O) (Flax's order).
      bias: optional (O,), added to each output channel.
      stride: an int or a pair (sh, sw), at least 1.
      padding: 'VALID', 'SAME', 'SAME_LOWER', an int, a pair (ph, pw) or
        ((top, bottom), (left, right)); amounts as in lax.conv_general_dilated
        ('SAME' gives ceil(H / sh) rows and puts an odd pixel at the bottom/right).
        With padding_mode 'zeros' an amount may be negative: that side is
        cropped, as in lax.
      dilation: kernel dilation, an int or a pair, at least 1.
      groups: split channels into this many groups (lax's feature_group_count);
        groups == C with O == C is a depthwise convolution.
      padding_mode: what fills the border: 'zeros', 'circular', 'reflect' or
        'replicate', as in torch.nn.Conv2d.
      layout: 'NCHW' or 'NHWC'; the output has the input's layout and batching.
      precision, preferred_element_type: as in lax.conv_general_dilated. jconv's
        own lowerings accumulate in at least float32 and round to the output dtype.
      method: one of jconv.METHODS: 'vmap', 'taps', 'im2col', 'banded', 'winograd',
        'xla', 'pallas' or 'auto' (per the platform the computation is lowered for: on
        a CPU one of jconv's own lowerings where measured faster than lax, else
        'xla'; on GPUs and TPUs 'xla', but 'pallas' on NVIDIA GPUs for the
        bfloat16 shape classes measured faster, see jconv/_auto.py). 'pallas' is a
        fused GPU kernel (Triton, through Pallas); off a CUDA GPU it runs the same
        kernel in Pallas's interpret mode, correct but slow. jconv's own lowerings
        support every transformation lax's convolution does (jit, grad, jvp, vmap,
        linear_transpose, remat, shard_map, ...), and put NaN and Inf where the
        products that form each value have them.
      input_dilation: lax's lhs_dilation, an int or a pair (ih, iw), at least 1:
        x as if ih - 1 rows (iw - 1 columns) of zeros sat between its pixels,
        then padded. Padding must then be explicit amounts (as in lax) and
        padding_mode 'zeros'. Every method runs it without multiplying by those
        zeros: the output splits into phases, each an ordinary convolution of x
        with the taps that land on its pixels (jconv/_subpixel.py), run by the
        method asked for ('auto': each phase by the CPU's rule on a CPU; lax's
        own lhs_dilation elsewhere); 'xla' passes lhs_dilation to lax.
        jconv.conv_transpose2d is the transposed convolution built on it.
      out_sharding: as in lax.conv_general_dilated, under JAX's explicit sharding
        mode: the result's sharding (a PartitionSpec under jax.set_mesh, or a
        NamedSharding). Required, as lax requires it, when the kernel or the bias
        is sharded there (a kernel split along its output channels, say), or x is
        split along its channels: jconv then gathers them whole for the lowering
        and lays the result out as asked. An x split along its height or width
        gives a result split the same way, as lax's does (`split_input`).

    Returns:
      (N, O, mh, mw) or (N, mh, mw, O) (without N if x had none), with
      ``mh = ((H - 1) * ih + 1 + top + bottom - (kh - 1) * dh - 1) // sh + 1``
      (likewise mw), in preferred_element_type if given, else the promoted
      dtype of x and kernel; a bias is then added as ``y + bias`` would add it
      (a float32 bias with float16 x and kernel gives float32, as it does after
      lax.conv).

    Raises:
      ValueError, TypeError: for a bad argument, before anything reaches XLA.
      Mixed dtypes follow JAX's promotion (refused under strict promotion);
      integer and bool inputs are refused: float16, bfloat16, float32 and
      float64 are supported.

    >>> import jax, jconv
    >>> x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8))     # N, C, H, W
    >>> w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))     # O, C, kh, kw
    >>> jconv.conv2d(x, w, padding="SAME", stride=2).shape
    (2, 4, 4, 4)
    """
    method = check_method(method)
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    bias = None if bias is None else jnp.asarray(bias)
    spec = check_conv_args(
        x.shape,
        kernel.shape,
        bias_shape=None if bias is None else bias.shape,
        x_dtype=x.dtype,
        kernel_dtype=kernel.dtype,
        bias_dtype=None if bias is None else bias.dtype,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        layout=layout,
        precision=precision,
        preferred_element_type=preferred_element_type,
        input_dilation=input_dilation,
        transposed_ok=True,
    )
    kernel, bias = whole_parameters(x, kernel, bias, out_sharding)
    x, lax_layout = split_input(x, spec, method, out_sharding)
    y = _conv2d(x, kernel, bias, spec=spec, method=method)
    result_sharding = out_sharding if out_sharding is not None else lax_layout
    return y if result_sharding is None else jax.sharding.reshard(y, result_sharding)


def whole_parameters(
    x: Array, kernel: Array, bias: Array | None, out_sharding: Any
) -> tuple[Array, Array | None]:
    """kernel and bias whole on x's mesh, under explicit sharding.

    - Split across devices (out_sharding given): gathered. Every lowering contracts
      over the kernel's axes as one array; lax itself refuses a split kernel without
      out_sharding, and so does jconv, before anything is traced.
    - On no mesh while x is on an explicit one (a NumPy kernel passed to a jit, say):
      placed on x's. The kernel's gradient is laid out as the kernel: lax's own (JAX's
      transpose, run by 'xla' and, on the platforms where it runs lax, 'auto') asks for
      an out_sharding when the kernel has no mesh while the batch it sums over is split
      (jax 0.10.2), and jconv's lowerings would give a gradient on no mesh.
    """
    if out_sharding is not None and not isinstance(out_sharding, (PartitionSpec, NamedSharding)):
        raise TypeError(
            f"out_sharding must be None, a PartitionSpec or a NamedSharding, got {out_sharding!r}"
        )
    split = {
        name: spec
        for name, a in (("kernel", kernel), ("bias", bias))
        if a is not None and (spec := explicit_spec(a)) is not None
    }
    if split and out_sharding is None:
        said = ", ".join(f"{name} as {spec}" for name, spec in split.items())
        raise ValueError(
            f"under JAX's explicit sharding mode the {said} is split across devices: give "
            "out_sharding, the result's sharding (lax.conv_general_dilated asks the same)"
        )
    mesh = jax.typeof(x).sharding.mesh
    on_explicit_mesh = not mesh.empty and jax.sharding.AxisType.Explicit in mesh.axis_types

    def whole(name: str, a: Array | None) -> Array | None:
        if a is None:
            return None
        if name in split:
            return jax.sharding.reshard(a, PartitionSpec())
        if on_explicit_mesh and jax.typeof(a).sharding.mesh.empty:
            return jax.sharding.reshard(a, NamedSharding(mesh, PartitionSpec()))
        return a

    return whole("kernel", kernel), whole("bias", bias)  # type: ignore[return-value]


def split_input(
    x: Array, spec: ConvSpec, method: str, out_sharding: Any
) -> tuple[Array, PartitionSpec | None]:
    """x as the lowerings take it under explicit sharding, and the result's layout lax gives.

    The lowerings take x split along its batch at most: their pads, windows and
    reshapes need whole rows and whole channel vectors. So, as lax does:

    - x split along its channels: a contraction over a split axis, which lax refuses
      without out_sharding; so does jconv, naming x's layout. With out_sharding, x is
      gathered along its channels and the result laid out as asked.
    - x split along its height or width: lax keeps that split on its result, and
      refuses where the result's size does not divide among the devices; so does
      jconv. x is gathered along its height and width (each device then computes its
      batch shard's whole images), and the result is laid out as lax's is. 'xla' keeps
      lax's own partitioning where lax runs x as it is (zero padding, no crop).
      Splitting the work itself along space, with halo exchanges, is
      jconv.sharding's job.

    Returns (x, layout): layout is the PartitionSpec lax gives the result, or None
    where nothing is to be laid out (x unsplit, or split along its batch only, which
    every lowering keeps).
    """
    x_spec = explicit_spec(x)
    if x_spec is None:
        return x, None
    info, shift = LAYOUT_INFO[spec.layout], 0 if spec.batched else 1
    entries = (*tuple(x_spec), *[None] * (x.ndim - len(x_spec)))
    channel = info.channel_axis - shift
    spatial = [a - shift for a in info.spatial_axes]
    if entries[channel] is not None and out_sharding is None:
        raise ValueError(
            f"under JAX's explicit sharding mode x is split along its channel axis ({channel}) "
            f"as {x_spec}: the convolution sums over that axis, so give out_sharding, the "
            "result's sharding (lax.conv_general_dilated asks the same)"
        )
    split_space = [a for a in spatial if entries[a] is not None]
    mesh = jax.typeof(x).sharding.mesh
    if out_sharding is None:
        for axis, size in zip(spatial, spec.out_hw):
            names = entries[axis]
            if names is None:
                continue
            devices = math.prod(
                mesh.shape[n] for n in (names if isinstance(names, tuple) else (names,))
            )
            if size % devices:
                side = "height" if axis == spatial[0] else "width"
                raise ValueError(
                    f"under JAX's explicit sharding mode x is split along its {side} as "
                    f"{x_spec}, and the result's {side}, {size}, does not divide among the "
                    f"{devices} devices of {names!r}: give out_sharding, the result's "
                    "sharding (lax refuses this too)"
                )
    keeps_space = method == "xla" and spec.is_plain and spec.padding_mode == "zeros"
    gathered = [channel] if keeps_space else [channel, *spatial]
    kept = tuple(None if a in gathered else entry for a, entry in enumerate(entries))
    if kept != entries:
        x = jax.sharding.reshard(x, PartitionSpec(*kept))
    if not split_space or out_sharding is not None:
        return x, None
    return x, PartitionSpec(*[None if a == channel else e for a, e in enumerate(entries)])


# inline: inside a caller's jit the body joins the caller's program. As a function of its
# own, 'auto''s platform index crossed from the forward function to the backward one as a
# value, and XLA's CPU compiler, seeing the branch chosen only after its convolution
# passes, left lax's backward convolutions unrewritten and slow (BENCHMARKS.md).
@functools.partial(jax.jit, static_argnames=("spec", "method"), inline=True)
def _conv2d(x: Array, kernel: Array, bias: Array | None, *, spec: ConvSpec, method: str) -> Array:
    x = x.astype(spec.dtype)
    if not spec.batched:
        x = x[None]
    w = kernel.astype(spec.dtype).transpose(LAYOUT_INFO[spec.layout].kernel_to_oihw)
    fuse = bias is not None and jnp.result_type(spec.out_dtype, bias.dtype) == spec.out_dtype
    if bias is not None and fuse and method in BIAS_LOWERINGS and spec.is_plain:
        # a wider bias is added below, after the lowering, as `y + bias` promotes
        y = BIAS_LOWERINGS[method](x, w, spec, bias.astype(spec.out_dtype))
        return y if spec.batched else y[0]
    y = _conv_auto(x, w, spec) if method == "auto" else _lower(x, w, method=method, spec=spec)
    if bias is not None:
        channel_axis = LAYOUT_INFO[spec.layout].channel_axis
        y = y + jnp.expand_dims(bias, [a for a in range(4) if a != channel_axis])
    return y if spec.batched else y[0]


def _conv_auto(x: Array, w: Array, spec: ConvSpec) -> Array:
    """method='auto': the rule of the platform the computation is lowered for.

    jax.lax.platform_dependent traces one branch per distinct lowering and, when
    the program is lowered for one platform, emits that platform's branch only;
    a program exported for several (jax.export(..., platforms=['cpu', 'cuda']))
    holds each, and the choice is made when it is compiled. Either way nothing is
    decided at run time. Transformations see a lax.switch (jit, grad, jvp, vmap,
    linear_transpose, remat and shard_map all pass through one) and apply to every
    branch: 'auto' supports a transformation where each platform's lowering does,
    and every lowering supports every transformation.
    """
    rules = auto_methods(spec)  # e.g. {'cpu': 'banded', 'cuda': 'xla', ..., 'default': 'xla'}
    default = rules.pop("default")
    branches: dict[str, Callable[[Array, Array], Array]] = {}  # one per distinct lowering
    per_platform: dict[str, str] = {}  # platform -> its branch's key
    for platform, method in [*rules.items(), ("default", default)]:
        if platform == "cpu" and spec.is_plain and cpu_compute_dtype(spec, method) is not None:
            key, branch = "cpu", functools.partial(_cpu_rule, spec=spec)  # widened
        else:
            key, branch = method, functools.partial(_lower, method=method, spec=spec)
        branches.setdefault(key, branch)
        if platform != "default":
            per_platform[platform] = key
    if len(branches) == 1:
        return branches[default](x, w)
    others = {p: branches[k] for p, k in per_platform.items() if k != default}
    return jax.lax.platform_dependent(x, w, default=branches[default], **others)


def _lower(x: Array, w: Array, *, method: str, spec: ConvSpec) -> Array:
    """One method on batched x and OIHW w. A spec with input dilation or crops goes to
    lax as it is ('xla'), or through the sub-pixel phases, each by the method (PHASES:
    each by the CPU's rule); the lowerings themselves see plain specs only."""
    if spec.is_plain:
        return RULE_LOWERINGS[method](x, w, spec)
    if method == "xla":
        x, spec = crop_undilated(x, spec)
        return conv_xla(x, w, spec)
    lower = _cpu_phase_rule if method == PHASES else RULE_LOWERINGS[method]
    return conv_subpixel(x, w, spec, lower)


def _cpu_phase_rule(x: Array, w: Array, spec: ConvSpec) -> Array:
    """The CPU rule's lowering for one sub-pixel phase (`choose_phase_method`)."""
    return _cpu_rule(x, w, spec, choose_phase_method(spec))


def _cpu_rule(x: Array, w: Array, spec: ConvSpec, method: str | None = None) -> Array:
    """The CPU rule's lowering (`method`, default `choose_method`'s), in float32 where
    `cpu_compute_dtype` says so (bfloat16 and float16 inputs of lowerings that move data
    more than they multiply: see jconv/_auto.py), the result rounded back to
    spec.out_dtype."""
    method = choose_method(spec) if method is None else method
    wide = cpu_compute_dtype(spec, method)
    if wide is None:
        return RULE_LOWERINGS[method](x, w, spec)
    wide_spec = dataclasses.replace(spec, dtype=wide, preferred_element_type=None)
    y = RULE_LOWERINGS[method](x.astype(wide), w.astype(wide), wide_spec)
    return y.astype(spec.out_dtype)
