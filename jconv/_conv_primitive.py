"""A JAX primitive for the lowerings that mix values: fast, exact where it matters, transformable.

'banded' and 'winograd' are fast because they mix the values of x (or of the
cotangent) before multiplying: band zeros, tile transforms. Two consequences
shape this module:

- Their results must be checked, forward and backward: an Inf, a NaN or an
  overflow in a mixed value spreads where lax's would not (jconv/_finite_guard.py).
  The check is a lax.cond on the result, which JAX can neither differentiate
  cheaply nor transpose (its predicate depends on the linear input).
- Their derivatives are best written by hand: JAX's own transpose of a tile
  transform scatters into overlapping tiles and ran 2-4x slower on a CPU.

A convolution is bilinear, and so are its two transposes, the input gradient
dx(dy, w) and the kernel gradient dw(x, dy). The three form a family closed
under differentiation and transposition, exactly as lax's convolution does:

    y(x, w):    transpose in x -> dx(ct, w)    transpose in w -> dw(x, ct)
    dx(dy, w):  transpose in dy -> y(ct, w)    transpose in w -> dw(ct, dy)
    dw(x, dy):  transpose in x -> dx(dy, ct)   transpose in dy -> y(x, ct)

and the JVP of each is the sum of the member applied to each tangent. So one
primitive, `conv_p`, with the member (its 'role') as a parameter, carries all
three: ``ad.defbilinear`` gives it forward mode (jvp, jacfwd, hessian,
forward-over-reverse) and transposition (grad, vjp, linear_transpose) at any
order; the batching rule folds a vmapped activation into the batch; its
lowering is the role's fast function, guarded by the exact one. Every member
is evaluated by hand-written code, never by JAX's transpose of another.

The fast functions are supplied by each lowering as a `Lowering`; the exact
ones come from jconv/_transposes.py and 'vmap'.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jconv._checks import ConvSpec
from jconv._finite_guard import finite_or_exact
from jconv._method_taps import conv_taps
from jconv._method_vmap import conv_vmap
from jconv._transposes import transpose_w, transpose_x
from jconv._typing import Array

ROLES = ("y", "dx", "dw")  # y(x, w), dx(dy, w), dw(x, dy)


class Lowering(NamedTuple):
    """A lowering as its three bilinear functions (x, dy batched in spec.layout; w OIHW).

    spec always has zero padding ('zeros' mode; other fills are padded outside).
    dw's last argument is the kernel's sharding, where JAX's explicit sharding mode
    should leave a contraction over the batch (None: wherever JAX likes).
    """

    name: str
    y: Callable[[Array, Array, ConvSpec], Array]  # (x, w) -> y, in spec.out_dtype
    dx: Callable[[Array, Array, ConvSpec], Array]  # (dy, w) -> dx, in spec.dtype
    dw: Callable[[Array, Array, ConvSpec, Any], Array]  # (x, dy, kernel sharding) -> dw


# What runs when the fast result is not all finite: only the products lax forms.
EXACT = Lowering("exact", conv_vmap, transpose_x, transpose_w)
# What runs under vmap of both operands: plain JAX, batched by JAX itself.
PLAIN = Lowering("plain", conv_taps, transpose_x, transpose_w)


@dataclasses.dataclass(frozen=True)
class ConvOp:
    """The primitive's parameters: which member of the family, for which problem."""

    spec: ConvSpec  # the forward convolution (zero padding)
    lowering: Lowering  # the fast functions
    role: str  # one of ROLES
    kernel_sharding: Any = None  # 'dw' only: the kernel's sharding (explicit sharding mode)


def _call(lowering: Lowering, op: ConvOp, a: Array, b: Array) -> Array:
    fn = getattr(lowering, op.role)
    if op.role == "dw":
        return fn(a, b, op.spec, op.kernel_sharding)
    return fn(a, b, op.spec)


def _evaluate(a: Array, b: Array, *, op: ConvOp) -> Array:
    """The fast member, or the exact one where the fast result is not all finite."""
    fast = _call(op.lowering, op, a, b)
    if getattr(op.lowering, op.role) is getattr(EXACT, op.role):
        return fast  # this member is the exact one already
    return finite_or_exact(fast, functools.partial(_call, EXACT, op), a, b)


conv_p = Primitive("jconv_conv")
conv_p.def_impl(jax.jit(_evaluate, static_argnames="op"))
mlir.register_lowering(conv_p, mlir.lower_fun(_evaluate, multiple_results=False))


@conv_p.def_abstract_eval
def _abstract_eval(a, b, *, op: ConvOp):
    """The exact member's result type (shape, dtype, sharding, varying manual axes)."""
    return jax.typeof(jax.eval_shape(functools.partial(_call, EXACT, op), a, b))


def bind(a: Array, b: Array, op: ConvOp) -> Array:
    return conv_p.bind(a, b, op=op)


def _with_role(op: ConvOp, role: str, kernel_sharding: Any = None) -> ConvOp:
    return dataclasses.replace(op, role=role, kernel_sharding=kernel_sharding)


def _transpose_a(ct, a, b, *, op: ConvOp):
    """The cotangent of the first operand (x for y and dw, dy for dx)."""
    if op.role == "y":  # y(x, w): dx(ct, w)
        return bind(ct, b, _with_role(op, "dx"))
    if op.role == "dx":  # dx(dy, w): y(ct, w)
        return bind(ct, b, _with_role(op, "y"))
    return bind(b, ct, _with_role(op, "dx"))  # dw(x, dy): dx(dy, ct)


def _transpose_b(ct, a, b, *, op: ConvOp):
    """The cotangent of the second operand (w for y and dx, dy for dw)."""
    if op.role == "y":  # y(x, w): dw(x, ct)
        return bind(a, ct, _with_role(op, "dw", b.aval.sharding))
    if op.role == "dx":  # dx(dy, w): dw(ct, dy)
        return bind(ct, a, _with_role(op, "dw", b.aval.sharding))
    return bind(a, ct, _with_role(op, "y"))  # dw(x, dy): y(x, ct)


ad.defbilinear(conv_p, _transpose_a, _transpose_b)


def _batch(args, dims, *, op: ConvOp):
    """vmap: fold a batched activation into the batch axis; anything else runs PLAIN under vmap.

    y(x, w) and dx(dy, w) with only their activation batched are the same member
    on a B times larger batch, so the fast lowering keeps running (vmap over
    unbatched samples, and its gradients, take this path). A batched kernel
    (an ensemble, or per-example kernel gradients) runs the plain per-tap
    functions, which JAX batches by itself.
    """
    (a, b), (da, db) = args, dims  # an unbatched operand's dimension is None
    if op.role in ("y", "dx") and db is None:
        a = jnp.moveaxis(a, da, 0)
        size = a.shape[0]
        spec = dataclasses.replace(op.spec, n=op.spec.n * size)
        out = bind(
            a.reshape(size * a.shape[1], *a.shape[2:]), b, dataclasses.replace(op, spec=spec)
        )
        return out.reshape(size, -1, *out.shape[1:]), 0
    return jax.vmap(functools.partial(_call, PLAIN, op), in_axes=(da, db))(a, b), 0


batching.primitive_batchers[conv_p] = _batch


def guarded_conv(x: Array, w: Array, spec: ConvSpec, lowering: Lowering) -> Array:
    """y = conv(x, w) by `lowering`'s fast functions, exact where they would not be.

    x: batched, spec.layout; w: (O, C/groups, kh, kw); spec with zero padding.

    Inside shard_map, x and w are first given the same varying manual axes, as
    JAX does for its own binary operations (subtracting a zero of the other's type
    inserts the cast): the transposes then return cotangents of x's and w's own
    types, summed across devices where JAX's transpose of that cast sums them.
    """
    x, w = x - jnp.zeros_like(w, shape=()), w - jnp.zeros_like(x, shape=())
    return bind(x, w, ConvOp(spec, lowering, "y"))
