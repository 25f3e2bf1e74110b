"""A lowering as the three members of a convolution's bilinear family: y, dx and dw.

y = conv(x, w) is linear in x and in w; its transposes are the input gradient
dx(dy, w) and the kernel gradient dw(x, dy). A lowering supplies y and may
supply hand-written dx and dw; where it does not, they are JAX's transposes
of its y (`transpose_in_x`, `transpose_in_w`), which form exactly the products
dy * w and x * dy that the gradient's definition forms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jconv._checks import ConvSpec
from jconv._typing import Array

Forward = Callable[[Array, Array, ConvSpec], Array]  # (x, w) -> y, in spec.out_dtype
ROLES = ("y", "dx", "dw")  # the members: y(x, w), dx(dy, w), dw(x, dy)


class Lowering(NamedTuple):
    """A lowering as the three members of the family (x, dy batched in spec.layout; w OIHW).

    spec has zero padding (jconv/_conv_primitive.py pads other fills first). dw's
    last argument is the kernel's sharding, where JAX's explicit sharding mode
    should leave a contraction over the batch (None: anywhere).
    """

    name: str
    y: Forward
    dx: Callable[[Array, Array, ConvSpec], Array] | None = None  # (dy, w) -> dx; None: JAX's
    dw: Callable[[Array, Array, ConvSpec, Any], Array] | None = None  # (x, dy, sharding) -> dw
    grouped: Lowering | None = None  # what runs instead when vmapped kernels become groups
    # The members whose results are checked for Infs and NaNs (jconv/_finite_guard.py):
    # those that mix values before multiplying them ('banded', 'winograd') must be.
    guarded: frozenset[str] = frozenset(ROLES)


def _x_shape(spec: ConvSpec) -> tuple[int, ...]:
    """The batched input shape in spec.layout."""
    return (
        (spec.n, spec.c, spec.height, spec.width)
        if spec.layout == "NCHW"
        else (spec.n, spec.height, spec.width, spec.c)
    )


def explicit_spec(a: Array) -> jax.sharding.PartitionSpec | None:
    """a's sharding over JAX's explicit mesh axes, or None where it is whole on every device."""
    spec = getattr(jax.typeof(a).sharding, "spec", None)
    return spec if spec is not None and any(entry is not None for entry in spec) else None


def transpose_in_x(forward: Forward, dy: Array, w: Array, spec: ConvSpec) -> Array:
    """JAX's transpose of forward(., w) at dy: x's type is dy's with x's shape and dtype."""
    x_type = jax.typeof(dy).update(shape=_x_shape(spec), dtype=spec.dtype)
    return jax.linear_transpose(lambda x: forward(x, w, spec), x_type)(dy)[0]


def transpose_in_w(forward: Forward, x: Array, dy: Array, spec: ConvSpec, sharding: Any) -> Array:
    """JAX's transpose of forward(x, .) at dy: the kernel's type is x's, laid out as sharding."""
    w_shape = (spec.o, spec.cg, spec.kh, spec.kw)
    extra = {} if sharding is None else {"sharding": sharding}
    w_type = jax.typeof(x).update(shape=w_shape, dtype=spec.dtype, **extra)
    return jax.linear_transpose(lambda w: forward(x, w, spec), w_type)(dy)[0]


def member(
    lowering: Lowering, role: str, a: Array, b: Array, spec: ConvSpec, sharding: Any
) -> Array:
    """lowering's y(x, w), dx(dy, w) or dw(x, dy) (role 'y', 'dx', 'dw') at (a, b)."""
    if role == "y":
        return lowering.y(a, b, spec)
    if role == "dx":
        return (
            transpose_in_x(lowering.y, a, b, spec)
            if lowering.dx is None
            else lowering.dx(a, b, spec)
        )
    if lowering.dw is None:
        return transpose_in_w(lowering.y, a, b, spec, sharding)
    return lowering.dw(a, b, spec, sharding)
