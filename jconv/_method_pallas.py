"""method='pallas': jconv's own GPU kernel, an implicit-GEMM convolution written in Pallas.

The lesson's construction, as one fused kernel: each program of the grid owns
a tile of (output pixels x output channels), the lesson's vmap over output
channels having become a grid axis, and accumulates in float32 registers,
over the kernel taps and over blocks of input channels, the product of the
input window shifted by the tap with the tap's (C x O) weights: the sum over
input channels done inside the kernel, with no patches in memory. The input
gradient and the kernel gradient are kernels of the same kind
(jconv/_pallas_triton.py), and all three are one JAX primitive
(jconv/_pallas_primitive.py), so that jit, grad, jvp, vmap,
linear_transpose, remat and shard_map all work as for lax's convolution.

Layout: NHWC inside, channels contiguous, so a block of channels is one
contiguous read per pixel; 'NCHW' is transposed around the kernel. Zero
padding is never materialized (padded pixels are masked loads); the other
padding modes fill the border first, as jconv/_padding.py does. A bias is
added in the forward kernel's epilogue. Depthwise convolutions run elementwise
kernels of their own.

Why the Triton lowering of Pallas first: it runs in interpret mode on a CPU,
so every test of this method runs in CI on a machine without a GPU, and it
lowers for CUDA from such a machine too (the kernels are checked to lower
with jax.export). Mosaic GPU reaches Hopper's wgmma and TMA, but its CPU
simulator is private and very slow; the tiling, the index arithmetic
(jconv/_pallas_geometry.py) and the tuning table (jconv/_pallas_tuning.py)
are kept apart from the Triton kernels so that a Mosaic GPU variant can reuse
them. Off CUDA, the kernels run in interpret mode: the same answer, slowly.
On jax 0.11 the Triton backend is deprecated (a DeprecationWarning when it is
lowered); it is still the one backend with a CPU interpreter.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import AxisType, PartitionSpec

from jconv._checks import ConvSpec
from jconv._layouts import batch_mesh_axis, relayout
from jconv._padding import pad_input
from jconv._pallas_geometry import ConvGeometry
from jconv._pallas_primitive import conv_product
from jconv._typing import Array


def _geometry(x: Array, spec: ConvSpec) -> ConvGeometry:
    """The convolution of an NHWC x (this device's block of it, under shard_map)."""
    n, h, w, c = x.shape
    return ConvGeometry(
        n, h, w, c, spec.o, spec.kh, spec.kw, spec.groups, spec.stride, spec.dilation, spec.pads
    )


def _conv_nhwc(x: Array, w: Array, bias: Array | None, spec: ConvSpec) -> Array:
    return conv_product(
        x,
        w,
        bias,
        product="y",
        geometry=_geometry(x, spec),
        out_dtype=spec.out_dtype,
        precision=spec.precision,
    )


def _explicit_axes(x: Array) -> tuple[Any, tuple[str, ...]]:
    """(mesh, its Explicit axes) of x's type; no axes outside JAX's explicit sharding mode."""
    mesh = jax.typeof(x).sharding.mesh
    names = getattr(mesh, "axis_names", ())
    types = getattr(mesh, "axis_types", ())
    return mesh, tuple(a for a, t in zip(names, types) if t == AxisType.Explicit)


def _batch_parallel(x: Array, w: Array, bias: Array | None, spec: ConvSpec) -> Array:
    """_conv_nhwc, run per device on its share of the batch under JAX's explicit sharding.

    A pallas_call is one opaque kernel that XLA cannot split: on an explicit
    mesh the batch is split by shard_map instead (the kernel and bias
    replicated; their gradients summed by shard_map), and any other split of x
    is undone first.
    """
    mesh, explicit = _explicit_axes(x)
    if not explicit:
        return _conv_nhwc(x, w, bias, spec)
    batch = batch_mesh_axis(x)
    x = jax.sharding.reshard(x, PartitionSpec(batch))
    w = jax.sharding.reshard(w, PartitionSpec())
    args, specs = [x, w], [PartitionSpec(batch), PartitionSpec()]
    if bias is not None:
        args.append(jax.sharding.reshard(bias, PartitionSpec()))
        specs.append(PartitionSpec())

    def local(x, w, *bias):  # x: (N / devices, H, W, C) on each device
        return _conv_nhwc(x, w, bias[0] if bias else None, spec)

    return jax.shard_map(local, mesh=mesh, in_specs=tuple(specs), out_specs=PartitionSpec(batch))(
        *args
    )


def conv_pallas(x: Array, w: Array, spec: ConvSpec, bias: Array | None = None) -> Array:
    """x: batched, spec.layout; w: (O, C/groups, kh, kw); bias: (O,) or None.

    Returns the batched output in spec.layout and spec.out_dtype, the bias added.
    """
    hp, wp = spec.padded_hw
    if spec.n * hp * wp >= 2**31:  # padded pixels: the most any kernel indexes
        raise NotImplementedError(
            f"method='pallas' indexes pixels with int32: a batch of {spec.n} images of "
            f"{(hp, wp)} pixels (padded) is too many; split the batch"
        )
    if spec.padding_mode != "zeros":
        x = pad_input(x, spec)
        spec = dataclasses.replace(spec, height=hp, width=wp, pads=((0, 0), (0, 0)))
    y = _batch_parallel(relayout(x, spec.layout, "NHWC"), w.transpose(2, 3, 1, 0), bias, spec)
    return relayout(y, "NHWC", spec.layout)
