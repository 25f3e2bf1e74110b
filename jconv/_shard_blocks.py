"""Local blocks: what one device computes under each sharding strategy, inside jax.shard_map.

The construction Y_o = sum_i X_i ⋆ W_(o,i) has four independent axes, and each is
a way to spread the work over the devices of one mesh axis:

- 'batch': each device convolves its slice of the batch with the whole kernel.
- 'out_channels' (the vmap axis): each device holds O/D of the filters and
  computes those output channels from the whole input.
- 'in_channels' (the sum axis): each device holds C/D input channels of x and
  of the kernel and computes a partial sum; one psum (or psum_scatter) ends it.
- 'spatial': each device holds H/D rows (and optionally W/D' columns); it gets
  the halo rows its windows need from its neighbours (ppermute), then convolves.

Every function here runs inside the caller's own `jax.shard_map` and takes the
mesh axis name it is split over; it calls jconv.conv2d on the device's block.
Arguments are checked once, against the whole (global) problem that the blocks
make up, by the same check_conv_args that conv2d uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jconv._checks import ConvSpec, check_conv_args, check_layout
from jconv._conv2d import check_method, conv2d
from jconv._layouts import LAYOUT_INFO
from jconv._shard_halo import HaloPlan, extend_with_halo, mask_tail, plan_halo
from jconv._typing import Array, ArrayLike, Shape

STRATEGIES: tuple[str, ...] = ("batch", "out_channels", "in_channels", "spatial")

AxisName = Any  # a mesh axis name (hashable, usually a str)
StrategyLike = Mapping[str, Any]  # {strategy: axis name}; 'spatial' may map to (h_axis, w_axis)


class Axes(NamedTuple):
    """The mesh axis each part of the problem is split over; None where it is not split."""

    batch: AxisName = None
    out_channels: AxisName = None
    in_channels: AxisName = None
    height: AxisName = None  # 'spatial', first axis
    width: AxisName = None  # 'spatial', second axis (optional)

    def used(self) -> tuple[AxisName, ...]:
        return tuple(a for a in self if a is not None)


def resolve_axes(strategy: StrategyLike) -> Axes:
    """{strategy: axis name} -> Axes; a ValueError for an unknown strategy or a reused axis.

    'spatial' takes one axis name (split the height) or a pair (h_axis, w_axis),
    either of which may be None.
    """
    if not isinstance(strategy, Mapping) or not strategy:
        raise ValueError(
            f"strategy must be one of {STRATEGIES} or a non-empty mapping "
            f"{{strategy: mesh axis name}}, got {strategy!r}"
        )
    fields: dict[str, AxisName] = {}
    for name, axis in strategy.items():
        if name not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r}: strategies are {STRATEGIES}")
        if name == "spatial":
            h, w = axis if isinstance(axis, (tuple, list)) else (axis, None)
            if isinstance(axis, (tuple, list)) and len(axis) != 2:
                raise ValueError(
                    f"strategy 'spatial' takes a mesh axis name or a pair (height axis, "
                    f"width axis), got {axis!r}"
                )
            if h is None and w is None:
                raise ValueError("strategy 'spatial' needs at least one mesh axis name")
            fields["height"], fields["width"] = h, w
        else:
            if axis is None or isinstance(axis, (tuple, list)):
                raise ValueError(f"strategy {name!r} takes one mesh axis name, got {axis!r}")
            fields[name] = axis
    axes = Axes(**fields)
    used = axes.used()
    if len(set(used)) != len(used):
        raise ValueError(f"each mesh axis can split one thing only; got strategy {strategy!r}")
    return axes


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """A checked sharded convolution: the global problem, how it is split, and the halos."""

    spec: ConvSpec  # the whole problem (always batched)
    axes: Axes
    sizes: tuple[tuple[AxisName, int], ...]  # (axis name, devices) for each axis in use
    halo_h: HaloPlan | None
    halo_w: HaloPlan | None

    def size(self, axis: AxisName) -> int:
        return 1 if axis is None else dict(self.sizes)[axis]

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output height and width of all the blocks together (>= spec.out_hw)."""
        mh, mw = self.spec.out_hw
        return (
            self.halo_h.padded_out if self.halo_h else mh,
            self.halo_w.padded_out if self.halo_w else mw,
        )


def _indivisible(what: str, size: int, axis: AxisName, devices: int, strategy: str) -> ValueError:
    return ValueError(
        f"{strategy} strategy: the {what} ({size}) is not divisible by the size ({devices}) "
        f"of mesh axis {axis!r}; choose a size that is a multiple of {devices} or another mesh"
    )


def plan_sharded_conv(spec: ConvSpec, axes: Axes, sizes: Mapping[AxisName, int]) -> ShardPlan:
    """Check that `spec` (the whole, batched problem) can be split as `axes` says.

    Refuses, with a ValueError naming the dimension, its size and the mesh axis,
    a dimension that its axis does not divide; it never pads.
    """
    sizes = {a: int(sizes[a]) for a in axes.used()}
    if axes.batch is not None and spec.n % sizes[axes.batch]:
        raise _indivisible("batch size N of x", spec.n, axes.batch, sizes[axes.batch], "batch")
    if axes.out_channels is not None:
        d = sizes[axes.out_channels]
        if spec.o % d:
            raise _indivisible(
                "number of output channels O of the kernel", spec.o, axes.out_channels, d,
                "out_channels",
            )  # fmt: skip
        od, og = spec.o // d, spec.og
        if spec.groups > 1 and od % og and og % od:
            raise ValueError(
                f"out_channels strategy: with groups={spec.groups}, each device's {od} output "
                f"channels (O={spec.o} / {d} devices on mesh axis {axes.out_channels!r}) must "
                f"hold whole groups of {og} channels or lie inside one"
            )
    if axes.in_channels is not None:
        d = sizes[axes.in_channels]
        if spec.groups != 1:
            raise ValueError(
                f"in_channels strategy supports groups=1 only, got groups={spec.groups}: a "
                "grouped convolution splits over its groups with the 'out_channels' strategy"
            )
        if spec.c % d:
            raise _indivisible(
                "number of input channels C of x and the kernel", spec.c, axes.in_channels, d,
                "in_channels",
            )  # fmt: skip
    halo_h = halo_w = None
    for name, which, a in (("height", 0, axes.height), ("width", 1, axes.width)):
        if a is None:
            continue
        plan = plan_halo(
            size=(spec.height, spec.width)[which],
            devices=sizes[a],
            pads=spec.pads[which],
            taps=(spec.kh, spec.kw)[which],
            dilation=spec.dilation[which],
            stride=spec.stride[which],
            padding_mode=spec.padding_mode,
            what=name,
            axis_name=a,
        )
        if which == 0:
            halo_h = plan
        else:
            halo_w = plan
    return ShardPlan(spec, axes, tuple(sizes.items()), halo_h, halo_w)


def _axis_size(axis: AxisName) -> int:
    try:
        return jax.lax.axis_size(axis)
    except NameError as e:
        raise ValueError(
            f"mesh axis {axis!r} is not bound here: call this block function inside "
            f"jax.shard_map over a mesh that has an axis named {axis!r}"
        ) from e


def global_spec_of_blocks(
    x_shape: Shape,
    kernel_shape: Shape,
    bias_shape: Shape | None,
    axes: Axes,
    sizes: Mapping[AxisName, int],
    **conv2d_kwargs: Any,
) -> ConvSpec:
    """The spec of the whole problem whose blocks (one device's shapes) are given.

    The layout is checked before it picks the axes to scale: a bad one is refused, as
    conv2d refuses it, never read as another.
    """
    layout = conv2d_kwargs.get("layout", "NCHW")
    check_layout(layout)
    info = LAYOUT_INFO[layout]
    x_whole, kernel_whole = list(x_shape), list(kernel_shape)
    batched = len(x_shape) == 4
    off = 0 if batched else 1  # an unbatched x has no axis 0

    def scale(shape: list[int], axis: int, by: AxisName) -> None:
        if by is not None and 0 <= axis < len(shape):
            shape[axis] *= sizes[by]

    if batched:
        scale(x_whole, 0, axes.batch)
    scale(x_whole, info.channel_axis - off, axes.in_channels)
    scale(x_whole, info.spatial_axes[0] - off, axes.height)
    scale(x_whole, info.spatial_axes[1] - off, axes.width)
    o_axis, i_axis = info.kernel_to_oihw[0], info.kernel_to_oihw[1]
    scale(kernel_whole, o_axis, axes.out_channels)
    scale(kernel_whole, i_axis, axes.in_channels)
    if bias_shape is not None and axes.out_channels is not None and len(bias_shape) == 1:
        bias_shape = (bias_shape[0] * sizes[axes.out_channels],)
    return check_conv_args(x_whole, kernel_whole, bias_shape=bias_shape, **conv2d_kwargs)


def vary(x: Array, axes: tuple[AxisName, ...]) -> Array:
    """x, marked as varying over `axes` where shard_map's type check has it invariant.

    A replicated input (x under 'out_channels', the kernel under 'batch' or
    'spatial') is cast here, at the block's entry, so that under jax.grad
    shard_map sums its cotangent here, at x's own size, and not wherever it first
    meets a varying operand: inside im2col that is the patches, kh * kw times
    larger. No communication; a no-op under check_vma=False.
    """
    for a in axes:
        if a is None or a in jax.typeof(x).mat.varying:
            continue
        with contextlib.suppress(ValueError):  # already varying, unbeknown to its type
            x = jax.lax.pcast(x, (a,), to="varying")
    return x


def conv_on_block(
    x: Array,
    kernel: Array,
    bias: Array | None,
    plan: ShardPlan,
    *,
    scatter: bool = False,
    method: str = "auto",
) -> Array:
    """One device's share of the convolution `plan` describes; x batched. Inside shard_map.

    # x: f[N/Db, C/Di, H/Dh, W/Dw] (NCHW; NHWC alike)
    # kernel: f[O/Do, C/Di (or C/groups), kh, kw]   bias: f[O/Do] or None
    # -> f[N/Db, O/Do (/Di if scatter), ceil(mh/Dh), ceil(mw/Dw)]
    """
    spec, axes = plan.spec, plan.axes
    info = LAYOUT_INFO[spec.layout]
    ch, (hax, wax) = info.channel_axis, info.spatial_axes
    used = axes.used()
    x, kernel = vary(x, used), vary(kernel, used)
    # the bias is added after the in_channels psum, to an output invariant over that axis
    if bias is not None:
        bias = vary(bias, tuple(a for a in used if a != axes.in_channels))
    groups = spec.groups
    if axes.out_channels is not None and spec.groups > 1:
        # This device's filters read only their own groups' input channels.
        od = spec.o // plan.size(axes.out_channels)
        groups = max(1, od // spec.og)
        first = jax.lax.axis_index(axes.out_channels) * od // spec.og
        x = jax.lax.dynamic_slice_in_dim(x, first * spec.cg, groups * spec.cg, axis=ch)
    pads = list(spec.pads)
    if plan.halo_h is not None:
        x = extend_with_halo(x, plan.halo_h, axis=hax, axis_name=axes.height)
        pads[0] = (0, 0)
    if plan.halo_w is not None:
        x = extend_with_halo(x, plan.halo_w, axis=wax, axis_name=axes.width)
        pads[1] = (0, 0)
    reduce = axes.in_channels is not None
    y = conv2d(
        x,
        kernel,
        None if reduce else bias,
        stride=spec.stride,
        padding=tuple(pads),
        dilation=spec.dilation,
        groups=groups,
        padding_mode=spec.padding_mode,
        layout=spec.layout,
        precision=spec.precision,
        preferred_element_type=spec.preferred_element_type,
        method=method,
    )
    if reduce:
        if scatter:
            y = jax.lax.psum_scatter(y, axes.in_channels, scatter_dimension=ch, tiled=True)
            if bias is not None:
                share = y.shape[ch]
                start = jax.lax.axis_index(axes.in_channels) * share
                bias = jax.lax.dynamic_slice_in_dim(bias, start, share)
        else:
            y = jax.lax.psum(y, axes.in_channels)
        if bias is not None:
            y = y + jnp.expand_dims(bias, [a for a in range(4) if a != ch])
    if plan.halo_h is not None:
        y = mask_tail(y, plan.halo_h, axis=hax, axis_name=axes.height)
    if plan.halo_w is not None:
        y = mask_tail(y, plan.halo_w, axis=wax, axis_name=axes.width)
    return y


_CONV_KWARGS = (
    "stride",
    "padding",
    "dilation",
    "groups",
    "padding_mode",
    "layout",
    "precision",
    "preferred_element_type",
)


def split_method(conv2d_kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """conv2d's keyword arguments without `method`, and `method` (checked)."""
    kwargs = dict(conv2d_kwargs)
    method = check_method(kwargs.pop("method", "auto"))
    unknown = sorted(set(kwargs) - set(_CONV_KWARGS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) for conv2d: {', '.join(unknown)}")
    return kwargs, method


def conv2d_block(
    x_block: ArrayLike,
    kernel_block: ArrayLike,
    bias_block: ArrayLike | None = None,
    *,
    strategy: StrategyLike,
    scatter: bool = False,
    **conv2d_kwargs: Any,
) -> Array:
    """One device's block of a convolution split as `strategy` says; call inside jax.shard_map.

    strategy maps each strategy in use to the mesh axis it splits over, e.g.
    {'batch': 'data', 'out_channels': 'model'}; 'spatial' takes an axis name
    (split the height) or a pair (height axis, width axis). The blocks are what
    `jax.shard_map` hands each device when the global arrays are split as
    `sharded_conv2d` splits them:

        # x_block: f[N/Db, C/Di, H/Dh, W/Dw]       (NHWC: f[N/Db, H/Dh, W/Dw, C/Di])
        # kernel_block: f[O/Do, C/Di, kh, kw]     (NHWC: f[kh, kw, C/Di, O/Do])
        # bias_block: f[O/Do], or None
        # -> f[N/Db, O/Do, ceil(mh/Dh), ceil(mw/Dw)]  (O/Do/Di with scatter=True)

    where Db, Do, Di, Dh, Dw are the sizes of the mesh axes used for batch,
    out_channels, in_channels and spatial (1 where unused). With 'in_channels'
    the partial sums are added with one psum (the output is replicated over that
    axis) or, if scatter=True, one psum_scatter that leaves the output split over
    its channels. With 'spatial', when D does not divide the output height mh
    the blocks hold ceil(mh/D) * D rows, the rows past mh being zeros.

    conv2d_kwargs are jconv.conv2d's (stride, padding, ..., method), meaning what
    they mean for the whole image: 'SAME' pads the whole image, not each block.
    """
    kwargs, method = split_method(conv2d_kwargs)
    axes = resolve_axes(strategy)
    x, kernel = jnp.asarray(x_block), jnp.asarray(kernel_block)
    bias = None if bias_block is None else jnp.asarray(bias_block)
    sizes = {a: _axis_size(a) for a in axes.used()}
    spec = global_spec_of_blocks(
        x.shape,
        kernel.shape,
        None if bias is None else bias.shape,
        axes,
        sizes,
        x_dtype=x.dtype,
        kernel_dtype=kernel.dtype,
        bias_dtype=None if bias is None else bias.dtype,
        **kwargs,
    )
    if not spec.batched:
        if axes.batch is not None:
            raise ValueError("batch strategy: x has no batch axis (it is unbatched)")
        spec = dataclasses.replace(spec, batched=True)
        x = x[None]
    plan = plan_sharded_conv(spec, axes, sizes)
    if scatter and axes.in_channels is None:
        raise ValueError("scatter=True needs the 'in_channels' strategy")
    if scatter:
        o_local = kernel.shape[LAYOUT_INFO[spec.layout].kernel_to_oihw[0]]
        d = plan.size(axes.in_channels)
        if o_local % d:
            raise _indivisible(
                "number of output channels on each device", o_local, axes.in_channels, d,
                "in_channels (scatter)",
            )  # fmt: skip
    y = conv_on_block(x, kernel, bias, plan, scatter=scatter, method=method)
    return y if len(jnp.shape(x_block)) == 4 else y[0]


def conv2d_batch_block(
    x_block: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    axis_name: AxisName,
    **conv2d_kwargs: Any,
) -> Array:
    """Data parallel: this device's slice of the batch, convolved with the whole kernel.

    No communication forward; under jax.grad the kernel's gradient is summed
    over `axis_name` by shard_map (the kernel is replicated).

        # x_block: f[N/D, C, H, W]   kernel: f[O, C/groups, kh, kw]   bias: f[O]
        # -> f[N/D, O, mh, mw]
    """
    return conv2d_block(x_block, kernel, bias, strategy={"batch": axis_name}, **conv2d_kwargs)


def conv2d_out_channels_block(
    x: ArrayLike,
    kernel_block: ArrayLike,
    bias_block: ArrayLike | None = None,
    *,
    axis_name: AxisName,
    **conv2d_kwargs: Any,
) -> Array:
    """Output-channel parallel (the vmap axis): this device's O/D filters on the whole input.

    No communication forward; the output stays split over its channels. With
    groups > 1 each device reads only the input channels of its own groups.

        # x: f[N, C, H, W]   kernel_block: f[O/D, C/groups, kh, kw]   bias_block: f[O/D]
        # -> f[N, O/D, mh, mw]
    """
    return conv2d_block(
        x, kernel_block, bias_block, strategy={"out_channels": axis_name}, **conv2d_kwargs
    )


def conv2d_in_channels_block(
    x_block: ArrayLike,
    kernel_block: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    axis_name: AxisName,
    scatter: bool = False,
    **conv2d_kwargs: Any,
) -> Array:
    """Input-channel parallel (the sum axis): a partial sum over C/D channels, then one psum.

    With scatter=True, one psum_scatter instead, which leaves the output split
    over its channels (O must then be divisible by D). groups must be 1.

        # x_block: f[N, C/D, H, W]   kernel_block: f[O, C/D, kh, kw]   bias: f[O]
        # -> f[N, O, mh, mw]   (scatter: f[N, O/D, mh, mw])
    """
    return conv2d_block(
        x_block,
        kernel_block,
        bias,
        strategy={"in_channels": axis_name},
        scatter=scatter,
        **conv2d_kwargs,
    )


def conv2d_spatial_block(
    x_block: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    axis_name: AxisName,
    w_axis_name: AxisName = None,
    **conv2d_kwargs: Any,
) -> Array:
    """Spatial: this device's rows (and columns) of the image, with halos from its neighbours.

    Splits the height over `axis_name` (None: not at all) and, if given, the width
    over `w_axis_name`. Each device receives the rows its windows need from its
    neighbours (jax.lax.ppermute), fills the image's padded border on the edge
    devices (padding_mode: zeros, circular around the ring, reflect and
    replicate from the edge device's own rows), then convolves its window.

        # x_block: f[N, C, H/Dh, W/Dw]   kernel: f[O, C/groups, kh, kw]   bias: f[O]
        # -> f[N, O, ceil(mh/Dh), ceil(mw/Dw)]   (rows past mh, if any, are zeros)
    """
    return conv2d_block(
        x_block, kernel, bias, strategy={"spatial": (axis_name, w_axis_name)}, **conv2d_kwargs
    )


def conv_pair_block(
    x: ArrayLike,
    kernel1_block: ArrayLike,
    kernel2_block: ArrayLike,
    bias1_block: ArrayLike | None = None,
    bias2: ArrayLike | None = None,
    *,
    axis_name: AxisName,
    activation: Callable[[Array], Array] | None = None,
    **conv2d_kwargs: Any,
) -> Array:
    """Two convolutions with one collective: the first output-channel parallel, the second
    input-channel parallel, as tensor-parallel MLPs pair their two matmuls.

    The first conv leaves its output split over channels, which is exactly the
    split the second needs for its input; only the second's partial sums meet,
    in one psum. `activation` (elementwise, default none) runs in between.

        # x: f[N, C, H, W]   kernel1_block: f[M/D, C, kh, kw]   bias1_block: f[M/D]
        # kernel2_block: f[O, M/D, kh, kw]   bias2: f[O]
        # h_block: f[N, M/D, mh, mw] -> f[N, O, mh2, mw2]
    """
    h = conv2d_out_channels_block(
        x, kernel1_block, bias1_block, axis_name=axis_name, **conv2d_kwargs
    )
    if activation is not None:
        h = activation(h)
    return conv2d_in_channels_block(h, kernel2_block, bias2, axis_name=axis_name, **conv2d_kwargs)
