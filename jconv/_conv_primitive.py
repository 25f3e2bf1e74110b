"""One JAX primitive for the lowerings that mix values: fast, transformable, with lax's numerics.

'banded' and 'winograd' are fast because they mix the values of x (or of the
cotangent) before multiplying: band zeros, tile transforms. So an Inf, a NaN
or an overflow in a mixed value spreads where lax's would not, and every
result they give must be checked (jconv/_finite_guard.py): a lax.cond on the
result, which JAX can neither transpose (its predicate depends on the linear
input) nor differentiate cheaply. And their derivatives are best written by
hand (JAX's transpose of a tile transform scatters into overlapping tiles,
which is slow on a CPU; BENCHMARKS.md).

A convolution is bilinear, and so are its two transposes, the input gradient
dx(dy, w) and the kernel gradient dw(x, dy). The three form a family closed
under differentiation and transposition, as lax's convolution does:

    y(x, w):    transpose in x -> dx(ct, w)    transpose in w -> dw(x, ct)
    dx(dy, w):  transpose in dy -> y(ct, w)    transpose in w -> dw(ct, dy)
    dw(x, dy):  transpose in x -> dx(dy, ct)   transpose in dy -> y(x, ct)

and the JVP of each is the sum of the member applied to each tangent. So one
primitive, `conv_p`, with the member (its 'role') and the lowering as
parameters, carries all three: ``ad.defbilinear`` gives it forward mode (jvp,
jacfwd, hessian, forward-over-reverse) and transposition (grad, vjp,
linear_transpose) at any order, `_batch` gives vmap, and its lowering to XLA
is the lowering's member, checked: where the result is not all finite, the
member is computed again by lax on the zero-padded input (the input gradient by
JAX's transpose of 'im2col'), forming only the products the definition forms, in
at least float32.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jconv._checks import ConvSpec
from jconv._finite_guard import finite_or_exact
from jconv._layouts import batch_mesh_axis, relayout
from jconv._lowering import Lowering, member, transpose_in_x
from jconv._method_im2col import conv_im2col
from jconv._method_xla import conv_xla
from jconv._padding import pad_input
from jconv._subpixel import multiply_adds
from jconv._typing import Array


def _lax_exact(x: Array, w: Array, spec: ConvSpec) -> Array:
    """lax's convolution of x zero-padded beforehand, in at least float32 at HIGHEST.

    In NHWC with an HWIO kernel whatever the layout: inside the guard's lax.cond branch
    nothing folds the layout into the convolution, and XLA:CPU ran any other form as
    naive loops (13x slower on ResNet's 14x14 layer; BENCHMARKS.md, session 6).
    Padded first, behind an optimization barrier, so that the products with the
    border's zeros are formed as the definition forms them (an Inf in the kernel
    times a border zero is NaN; lax's own padding skips those products and XLA
    would fold a visible pad back into it). Its transpose in the kernel forms
    x * dy over the same padded x.
    """
    acc = spec.acc_dtype
    # computed in NHWC, which XLA:CPU runs through its library
    x = jax.lax.optimization_barrier(relayout(pad_input(x.astype(acc), spec), spec.layout, "NHWC"))
    hp, wp = spec.padded_hw
    exact = dataclasses.replace(
        spec, height=hp, width=wp, pads=((0, 0), (0, 0)), dtype=acc, preferred_element_type=None,
        precision=jax.lax.Precision.HIGHEST, layout="NHWC",
    )  # fmt: skip
    return relayout(conv_xla(x, w.astype(acc), exact), "NHWC", spec.layout).astype(spec.out_dtype)


def _im2col_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """JAX's transpose of 'im2col' in x: one GEMM, dy times the kernel matrix, forming the
    products dy * w of the input gradient's definition, each added back to the input
    pixel it belongs to. lax's transpose pads dy with zeros and correlates: an Inf in
    the kernel times a padded zero is NaN where no product of the definition reaches."""
    return transpose_in_x(conv_im2col, dy, w, spec)


# What recomputes a result that is not all finite: lax on the zero-padded input for the
# result and the kernel gradient, 'im2col''s transpose for the input gradient (above).
# 'vmap''s transposes there made most of a guarded forward-plus-backward program's
# compile time; 'taps' for the result slowed the compiled forward pass on a CPU even
# when the branch was never taken (BENCHMARKS.md).
EXACT = Lowering("exact", _lax_exact, dx=_im2col_dx, guarded=frozenset())
LAX = Lowering("xla", conv_xla)  # only to type results: one lax operation per member


@dataclasses.dataclass(frozen=True)
class ConvOp:
    """The primitive's parameters: which member of the family, for which problem."""

    spec: ConvSpec  # the forward convolution (zero padding)
    lowering: Lowering
    role: str  # 'y' (x, w), 'dx' (dy, w) or 'dw' (x, dy)
    kernel_sharding: Any = None  # 'dw' only: the kernel's sharding


def _call(lowering: Lowering, op: ConvOp, a: Array, b: Array) -> Array:
    return member(lowering, op.role, a, b, op.spec, op.kernel_sharding)


def _exact(op: ConvOp, a: Array, b: Array) -> Array:
    """EXACT's member; the input gradient one sample at a time (a lax.map over the batch).

    XLA reserves memory for a branch that may run, whether or not it does: an input
    gradient through patches of the whole batch would need kh*kw copies of it; one
    sample at a time it needs 1/N of that. lax's convolutions need little beyond
    their results.
    """
    if op.role != "dx" or batch_mesh_axis(a) is not None:
        return _call(EXACT, op, a, b)  # a scan cannot run over a batch laid out on devices
    one = dataclasses.replace(op, spec=dataclasses.replace(op.spec, n=1))
    return jax.lax.map(lambda a_n: _call(EXACT, one, a_n[None], b)[0], a)  # a: dy; b: w


def _evaluate(a: Array, b: Array, *, op: ConvOp) -> Array:
    """The lowering's member, or EXACT's where a guarded member's result is not all finite."""
    result = _call(op.lowering, op, a, b)
    if op.role not in op.lowering.guarded:
        return result
    return finite_or_exact(result, functools.partial(_exact, op), a, b)


conv_p = Primitive("jconv_conv")
conv_p.def_impl(jax.jit(_evaluate, static_argnames="op"))
mlir.register_lowering(conv_p, mlir.lower_fun(_evaluate, multiple_results=False))


@conv_p.def_abstract_eval
def _abstract_eval(a, b, *, op: ConvOp):
    """The member's result type (shape, dtype, sharding, varying manual axes), as lax's."""
    return jax.typeof(jax.eval_shape(functools.partial(_call, LAX, op), a, b))


def _bind(a: Array, b: Array, op: ConvOp, role: str, kernel_sharding: Any = None) -> Array:
    op = dataclasses.replace(op, role=role, kernel_sharding=kernel_sharding)
    return conv_p.bind(a, b, op=op)


def _transpose_a(ct, a, b, *, op: ConvOp):
    """The cotangent of the first operand (x for y and dw, dy for dx)."""
    if op.role == "y":  # y(x, w): dx(ct, w)
        return _bind(ct, b, op, "dx")
    if op.role == "dx":  # dx(dy, w): y(ct, w)
        return _bind(ct, b, op, "y")
    return _bind(b, ct, op, "dx")  # dw(x, dy): dx(dy, ct)


def _transpose_b(ct, a, b, *, op: ConvOp):
    """The cotangent of the second operand (w for y and dx, dy for dw)."""
    if op.role == "y":  # y(x, w): dw(x, ct)
        return _bind(a, ct, op, "dw", b.aval.sharding)
    if op.role == "dx":  # dx(dy, w): dw(ct, dy)
        return _bind(ct, a, op, "dw", b.aval.sharding)
    return _bind(a, ct, op, "y")  # dw(x, dy): y(x, ct)


ad.defbilinear(conv_p, _transpose_a, _transpose_b)


def _channel_axis(op: ConvOp, operand: str) -> int:
    """Where an operand keeps its channels: activations by layout, kernels (OIHW) on O."""
    return 0 if operand == "w" else (1 if op.spec.layout == "NCHW" else 3)


OPERANDS = {"y": ("x", "w", "y"), "dx": ("y", "w", "x"), "dw": ("x", "y", "w")}


def _batch(axis_data, args, dims, *, op: ConvOp):
    """vmap. A vmapped activation of y or dx, with the kernel shared, folds into the batch:
    the same member on a B times larger batch. With x shared, a vmapped kernel (y) or
    output gradient (dw) folds into the output channels: one problem with B times as
    many, run by the same lowering (an ensemble's forward pass and kernel gradient; as
    B groups, these ran 'taps' on grouped windows, 10x to 40x slower than the same
    lowering on B times the outputs, BENCHMARKS.md, session 9). Anything else (both
    vmapped, or dx's kernel) is B independent problems: folded into B times as many
    groups, as lax does, for a lowering that takes groups; one after another
    (lax.map), each by the lowering itself, for one that does not ('banded',
    'winograd'), unless the problems are small (ONE_BY_ONE_MIN_MULTIPLY_ADDS) or the
    vmapped axis is laid out on devices (vmap's spmd_axis_name, or an explicit mesh
    axis): then as groups, by its `grouped` lowering, which the devices split between
    them, where a lax.map over that axis would run every problem on every device.
    """
    (a, b), (da, db) = args, dims  # an unbatched operand's dimension is None
    if da is None and db is None:  # neither vmapped (closed over): the problem as it is
        return conv_p.bind(a, b, op=op), None
    spec = op.spec
    if op.role in ("y", "dx") and db is None:
        a = jnp.moveaxis(a, da, 0)
        size = a.shape[0]
        folded = dataclasses.replace(op, spec=dataclasses.replace(spec, n=spec.n * size))
        out = conv_p.bind(a.reshape(size * a.shape[1], *a.shape[2:]), b, op=folded)
        return out.reshape(size, -1, *out.shape[1:]), 0
    size = a.shape[da] if da is not None else b.shape[db]
    kinds = OPERANDS[op.role]
    if op.role in ("y", "dw") and da is None:
        # x shared, the kernel (for y) or the output gradient (for dw) vmapped: B times
        # as many output channels of one problem, which every lowering takes as it is
        folded = dataclasses.replace(op, spec=dataclasses.replace(spec, o=spec.o * size))
        v = _fold_channels(b, db, _channel_axis(op, kinds[1]), spec.groups, size)
        out = conv_p.bind(a, v, op=folded)
        return _unfold_channels(out, _channel_axis(op, kinds[2]), spec.groups, size), 0

    if (
        op.lowering.grouped is not None
        and multiply_adds(spec) >= ONE_BY_ONE_MIN_MULTIPLY_ADDS
        and not _on_devices(axis_data)
    ):
        # B independent problems that this lowering cannot run as groups: one after
        # another, each by the lowering itself (as groups they ran 'taps' on grouped
        # windows: 3x to 30x slower, BENCHMARKS.md, session 9)
        return _one_by_one(a, da, b, db, size, op), 0
    grouped_spec = dataclasses.replace(
        spec, c=spec.c * size, o=spec.o * size, groups=spec.groups * size
    )
    lowering = op.lowering if op.lowering.grouped is None else op.lowering.grouped
    folded_op = dataclasses.replace(op, spec=grouped_spec, lowering=lowering)
    # each problem's channels (all its groups) one block: B in front of the channels
    a, b = (
        _fold_channels(v, d, _channel_axis(op, k), 1, size)
        for v, d, k in zip((a, b), (da, db), kinds)
    )
    out = conv_p.bind(a, b, op=folded_op)
    return _unfold_channels(out, _channel_axis(op, kinds[2]), 1, size), 0


batching.fancy_primitive_batchers[conv_p] = _batch  # given vmap's axis: where it is laid out


def _on_devices(axis_data: Any) -> bool:
    """Whether a vmapped axis is split over devices: vmap's spmd_axis_name, or an
    explicit mesh axis."""
    return axis_data.spmd_name is not None or axis_data.explicit_mesh_axis is not None


# Below this many multiply-adds a problem, B of them run faster as groups ('taps') than
# one after another: LeNet conv2 on one sample (240 k), 64 per-sample kernel gradients,
# 2.4 to 3.2 ms as groups against 3.0 to 4.7 in turn; at 30 M (the same layer on 64
# samples), four problems ran 4.2 to 5.3 ms in turn against 135 to 143 as groups.
ONE_BY_ONE_MIN_MULTIPLY_ADDS = 1 << 22


def _one_by_one(a: Array, da: int | None, b: Array, db: int | None, size: int, op: ConvOp):
    """The member on each of B problems in turn (lax.map): (B, ...) results."""
    a_b = None if da is None else jnp.moveaxis(a, da, 0)
    b_b = None if db is None else jnp.moveaxis(b, db, 0)

    def one(operands: tuple[Array | None, Array | None]) -> Array:
        a_i, b_i = operands
        return conv_p.bind(a if a_i is None else a_i, b if b_i is None else b_i, op=op)

    return jax.lax.map(one, (a_b, b_b))


def _fold_channels(v: Array, d: int | None, axis: int, groups: int, size: int) -> Array:
    """v vmapped along d (None: shared, repeated B times), its channels on `axis` -> one
    operand with B times as many, in the order (group, B, per group): each group's
    channels stay together, as `groups` asks (groups=1: B in front of the channels).
    """
    v = jnp.broadcast_to(v[None], (size, *v.shape)) if d is None else jnp.moveaxis(v, d, 0)
    channels = v.shape[axis + 1]
    v = v.reshape(*v.shape[: axis + 1], groups, channels // groups, *v.shape[axis + 2 :])
    v = jnp.moveaxis(v, 0, axis + 1)  # (..., groups, B, per group, ...)
    return v.reshape(*v.shape[:axis], size * channels, *v.shape[axis + 3 :])


def _unfold_channels(out: Array, axis: int, groups: int, size: int) -> Array:
    """`_fold_channels`'s inverse on a result: (B, ...) with its own channels."""
    out = out.reshape(*out.shape[:axis], groups, size, -1, *out.shape[axis + 1 :])
    out = jnp.moveaxis(out, axis + 1, 0)  # (B, ..., groups, per group, ...)
    return out.reshape(*out.shape[: axis + 1], -1, *out.shape[axis + 3 :])


def lowered_conv(x: Array, w: Array, spec: ConvSpec, lowering: Lowering) -> Array:
    """y = conv(x, w) by `lowering`, through `conv_p`.

    x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output, spec.layout.
    Fills other than zeros are padded here, and differentiated by JAX. Inside
    shard_map, x and w are given the same varying manual axes first, as JAX does
    for its own binary operations (subtracting a zero of the other's type inserts
    the cast), so that each cotangent comes back in its operand's own type.
    """
    if spec.padding_mode != "zeros":
        x = pad_input(x, spec)
        hp, wp = spec.padded_hw
        spec = dataclasses.replace(
            spec, height=hp, width=wp, pads=((0, 0), (0, 0)), padding_mode="zeros"
        )
    x, w = x - jnp.zeros_like(w, shape=()), w - jnp.zeros_like(x, shape=())
    return conv_p.bind(x, w, op=ConvOp(spec, lowering, "y"))
