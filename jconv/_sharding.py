"""sharded_conv2d: jconv.conv2d on global arrays, split over a device mesh with jax.shard_map.

The caller hands in whole arrays and a jax.sharding.Mesh; this module places
them on the mesh as the strategy says, runs the local block of
jconv._shard_blocks on every device under jax.shard_map inside jit, and hands
back the whole result, equal to jconv.conv2d's. A dimension that its mesh axis
does not divide is refused with a ValueError (never padded); only the spatial
strategy's output, whose height need not be a multiple of the device count, is
computed padded and cut back to conv2d's size.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jconv._checks import ConvSpec, check_conv_args
from jconv._layouts import LAYOUT_INFO
from jconv._shard_blocks import (
    STRATEGIES,
    Axes,
    AxisName,
    ShardPlan,
    conv_on_block,
    plan_sharded_conv,
    resolve_axes,
    split_method,
)
from jconv._typing import Array, ArrayLike


def strategy_axes(strategy: str | Mapping[str, Any], axis: Any, mesh: Mesh) -> Axes:
    """Resolve sharded_conv2d's (strategy, axis) on `mesh`; a ValueError for unknown names."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if isinstance(strategy, str):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}: strategies are {STRATEGIES}")
        strategy = {strategy: mesh.axis_names[0] if axis is None else axis}
    elif axis is not None:
        raise ValueError(
            "axis is for a single strategy; with a mapping of strategies, name each one's "
            f"axis in the mapping (got axis={axis!r})"
        )
    axes = resolve_axes(strategy)
    for a in axes.used():
        if a not in mesh.axis_names:
            raise ValueError(
                f"unknown mesh axis {a!r} in strategy {strategy!r}: the mesh's axes are "
                f"{tuple(mesh.axis_names)}"
            )
    return axes


def block_specs(axes: Axes, layout: str) -> tuple[P, P, P, P]:
    """PartitionSpecs of (x, kernel, bias, output), all batched, for a split `axes`.

    The output's channels are split where the kernel's output channels are;
    'in_channels' leaves the output replicated over its axis (it is psum'd).
    """
    info = LAYOUT_INFO[layout]
    x, out = [None] * 4, [None] * 4
    x[0] = out[0] = axes.batch
    x[info.channel_axis], out[info.channel_axis] = axes.in_channels, axes.out_channels
    for a, name in zip(info.spatial_axes, (axes.height, axes.width), strict=True):
        x[a] = out[a] = name
    kernel = [None] * 4
    kernel[info.kernel_to_oihw[0]] = axes.out_channels
    kernel[info.kernel_to_oihw[1]] = axes.in_channels
    return P(*x), P(*kernel), P(axes.out_channels), P(*out)


def _shape_dtype(a: Any) -> tuple[tuple[int, ...], Any]:
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return tuple(a.shape), a.dtype
    a = np.asarray(a)
    return a.shape, a.dtype


def _check(
    x: Any, kernel: Any, bias: Any, conv2d_kwargs: Mapping[str, Any]
) -> tuple[ConvSpec, str]:
    kwargs, method = split_method(conv2d_kwargs)
    (xs, xd), (ks, kd) = _shape_dtype(x), _shape_dtype(kernel)
    bs, bd = (None, None) if bias is None else _shape_dtype(bias)
    spec = check_conv_args(
        xs, ks, bias_shape=bs, x_dtype=xd, kernel_dtype=kd, bias_dtype=bd, **kwargs
    )
    return spec, method


def _crop(y: Array, spec: ConvSpec, mesh: Mesh, out_spec: P) -> Array:
    """Cut the spatial strategy's padded output rows back to conv2d's (mh, mw).

    On an Explicit mesh an array's layout must split it evenly, so a cut axis is
    gathered first (on an Auto mesh XLA chooses).
    """
    info = LAYOUT_INFO[spec.layout]
    cut = [a for a, size in zip(info.spatial_axes, spec.out_hw, strict=True) if y.shape[a] != size]
    if not cut:
        return y
    y = place(y, mesh, P(*(None if i in cut else a for i, a in enumerate(out_spec))))
    for axis, size in zip(info.spatial_axes, spec.out_hw, strict=True):
        y = jax.lax.slice_in_dim(y, 0, size, axis=axis)
    return y


def _with_batch_axis(x: Any, batched: bool) -> Any:
    return x if batched else x[None]


def place(x: Array, mesh: Mesh, spec: P) -> Array:
    """Inside jit: lay x out as `spec` on the mesh's Explicit axes, as shard_map requires.

    A mesh from jax.make_mesh has Explicit axes, whose layout is part of an
    array's type: shard_map then refuses an input laid out otherwise. Auto axes
    (jax.sharding.Mesh's default) need nothing: shard_map moves the data itself.
    """
    kinds = zip(mesh.axis_names, mesh.axis_types, strict=True)
    explicit = {a for a, t in kinds if t == jax.sharding.AxisType.Explicit}
    if not explicit:
        return x
    keep = P(*(None if a is None or a not in explicit else a for a in spec))
    return jax.reshard(x, NamedSharding(mesh, keep))


def sharded_conv2d(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    mesh: Mesh,
    strategy: str | Mapping[str, Any],
    axis: AxisName | tuple[AxisName, AxisName] | None = None,
    **conv2d_kwargs: Any,
) -> Array:
    """jconv.conv2d with the work split over the devices of `mesh`; whole arrays in and out.

    Args:
      x, kernel, bias: as in jconv.conv2d (global arrays: NumPy, or jax.Arrays
        placed anywhere, across processes too).
      mesh: a jax.sharding.Mesh.
      strategy: 'batch', 'out_channels', 'in_channels' or 'spatial' (see
        jconv.sharding.STRATEGIES), split over mesh axis `axis` (default: the mesh's
        first); or a mapping {strategy: axis name} combining several on a mesh
        with several axes, e.g. {'batch': 'data', 'out_channels': 'model'}.
        'spatial' splits the height; give it a pair of axis names, (height
        axis, width axis), to split both.
      conv2d_kwargs: jconv.conv2d's (stride, padding, dilation, groups,
        padding_mode, layout, precision, preferred_element_type, method).

    Returns:
      jconv.conv2d(x, kernel, bias, **conv2d_kwargs), laid out on the mesh:
      split over the batch ('batch'), the channels ('out_channels'), the
      height/width ('spatial'), or replicated ('in_channels').

    Raises:
      ValueError: for an unknown strategy or axis name; a dimension its mesh
        axis does not divide (never padded: the message names the dimension,
        its size and the axis); a spatial block smaller than its halo; and
        everything jconv.conv2d refuses.

    Blocks per device, NCHW, with D devices on the axis (NHWC alike):

        # batch:        x f[N/D, C, H, W]  kernel f[O, C, kh, kw]     -> f[N/D, O, mh, mw]
        # out_channels: x f[N, C, H, W]    kernel f[O/D, C, kh, kw]   -> f[N, O/D, mh, mw]
        # in_channels:  x f[N, C/D, H, W]  kernel f[O, C/D, kh, kw]   -> psum -> f[N, O, mh, mw]
        # spatial:      x f[N, C, H/D, W] + halo rows from neighbours -> f[N, O, mh/D, mw]

    >>> import jax, jconv
    >>> mesh = jax.make_mesh((jax.device_count(),), ("d",))
    >>> x = jax.random.normal(jax.random.key(0), (8, 3, 16, 16))
    >>> w = jax.random.normal(jax.random.key(1), (8, 3, 3, 3))
    >>> jconv.sharding.sharded_conv2d(x, w, mesh=mesh, strategy="batch", padding="SAME").shape
    (8, 8, 16, 16)
    """
    axes = strategy_axes(strategy, axis, mesh)
    spec, method = _check(x, kernel, bias, conv2d_kwargs)
    if not spec.batched and axes.batch is not None:
        raise ValueError("batch strategy: x has no batch axis (it is unbatched)")
    plan = plan_sharded_conv(dataclasses.replace(spec, batched=True), axes, dict(mesh.shape))
    return _sharded_conv2d(
        x, kernel, bias, mesh=mesh, plan=plan, method=method, batched=spec.batched
    )


@functools.partial(jax.jit, static_argnames=("mesh", "plan", "method", "batched"))
def _sharded_conv2d(
    x: Array, kernel: Array, bias: Array | None, *, mesh: Mesh, plan: ShardPlan, method: str,
    batched: bool,
) -> Array:  # fmt: skip
    x_spec, k_spec, b_spec, out_spec = block_specs(plan.axes, plan.spec.layout)
    args, in_specs = [_with_batch_axis(x, batched), kernel], [x_spec, k_spec]
    if bias is not None:
        args, in_specs = [*args, bias], [*in_specs, b_spec]
    args = [place(a, mesh, s) for a, s in zip(args, in_specs, strict=True)]

    def block(x, kernel, bias=None):
        # x: f[N/Db, C/Di, H/Dh, W/Dw] (layout's order), kernel: f[O/Do, C/Di, kh, kw]
        return conv_on_block(x, kernel, bias, plan, method=method)

    y = jax.shard_map(block, mesh=mesh, in_specs=tuple(in_specs), out_specs=out_spec)(*args)
    y = _crop(y, plan.spec, mesh, out_spec)
    return y if batched else y[0]


def sharded_conv_pair(
    x: ArrayLike,
    kernel1: ArrayLike,
    kernel2: ArrayLike,
    bias1: ArrayLike | None = None,
    bias2: ArrayLike | None = None,
    *,
    mesh: Mesh,
    axis: AxisName = None,
    activation: Callable[[Array], Array] | None = None,
    **conv2d_kwargs: Any,
) -> Array:
    """conv2d(activation(conv2d(x, kernel1, bias1)), kernel2, bias2) with one collective.

    The first convolution is output-channel parallel and leaves its M output
    channels split over mesh axis `axis` (default: the first), which is the
    split the second, input-channel parallel, needs: the pair communicates once,
    a psum of the output, as a tensor-parallel MLP does. conv2d_kwargs apply to
    both convolutions; `activation` must be elementwise (default: none).

        # x: f[N, C, H, W] (replicated)   kernel1: f[M/D, C, kh, kw]   kernel2: f[O, M/D, kh, kw]
        # h_block: f[N, M/D, mh, mw]  ->  partial f[N, O, mh2, mw2]  ->  psum  ->  f[N, O, mh2, mw2]
    """
    axes1 = strategy_axes("out_channels", axis, mesh)
    axes2 = Axes(in_channels=axes1.out_channels)
    spec1, method = _check(x, kernel1, bias1, conv2d_kwargs)
    h_shape = spec1.out_shape() if spec1.batched else spec1.out_shape()[1:]
    kwargs, _ = split_method(conv2d_kwargs)
    k2_shape, k2_dtype = _shape_dtype(kernel2)
    spec2 = check_conv_args(
        h_shape,
        k2_shape,
        bias_shape=None if bias2 is None else _shape_dtype(bias2)[0],
        x_dtype=spec1.out_dtype,
        kernel_dtype=k2_dtype,
        bias_dtype=None if bias2 is None else _shape_dtype(bias2)[1],
        **kwargs,
    )
    sizes = dict(mesh.shape)
    plan1 = plan_sharded_conv(dataclasses.replace(spec1, batched=True), axes1, sizes)
    plan2 = plan_sharded_conv(dataclasses.replace(spec2, batched=True), axes2, sizes)
    return _sharded_conv_pair(
        x, kernel1, kernel2, bias1, bias2, mesh=mesh, plans=(plan1, plan2), method=method,
        activation=activation, batched=spec1.batched,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("mesh", "plans", "method", "activation", "batched"))
def _sharded_conv_pair(
    x: Array, kernel1: Array, kernel2: Array, bias1: Array | None, bias2: Array | None, *,
    mesh: Mesh, plans: tuple[ShardPlan, ShardPlan], method: str,
    activation: Callable[[Array], Array] | None, batched: bool,
) -> Array:  # fmt: skip
    plan1, plan2 = plans
    _, k1_spec, b1_spec, _ = block_specs(plan1.axes, plan1.spec.layout)
    _, k2_spec, _, out_spec = block_specs(plan2.axes, plan2.spec.layout)
    args = {"x": _with_batch_axis(x, batched), "kernel1": kernel1, "kernel2": kernel2}
    specs = {"x": P(), "kernel1": k1_spec, "kernel2": k2_spec}
    if bias1 is not None:
        args["bias1"], specs["bias1"] = bias1, b1_spec
    if bias2 is not None:
        args["bias2"], specs["bias2"] = bias2, P()

    def block(a: dict[str, Array]) -> Array:
        # x: f[N, C, H, W]   kernel1: f[M/D, C, kh, kw]   kernel2: f[O, M/D, kh, kw]
        h = conv_on_block(a["x"], a["kernel1"], a.get("bias1"), plan1, method=method)
        # h: f[N, M/D, mh, mw], split over channels: the second conv's in_channels split
        if activation is not None:
            h = activation(h)
        return conv_on_block(h, a["kernel2"], a.get("bias2"), plan2, method=method)

    args = {k: place(v, mesh, specs[k]) for k, v in args.items()}
    y = jax.shard_map(block, mesh=mesh, in_specs=(specs,), out_specs=out_spec)(args)
    return y if batched else y[0]


def shard_inputs(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    mesh: Mesh,
    strategy: str | Mapping[str, Any],
    axis: Any = None,
    layout: str = "NCHW",
) -> tuple[Array, ...]:
    """Place batched x, kernel (and bias) on `mesh` as sharded_conv2d splits them.

    Handy to start from arrays that already live where the blocks are computed
    (sharded_conv2d also accepts them placed anywhere and moves them itself).
    """
    axes = strategy_axes(strategy, axis, mesh)
    x_spec, k_spec, b_spec, _ = block_specs(axes, layout)
    out = [
        jax.device_put(x, NamedSharding(mesh, x_spec)),
        jax.device_put(kernel, NamedSharding(mesh, k_spec)),
    ]
    if bias is not None:
        out.append(jax.device_put(bias, NamedSharding(mesh, b_spec)))
    return tuple(out)
