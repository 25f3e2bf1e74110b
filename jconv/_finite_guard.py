"""Keeping lax's NaN and Inf behaviour in lowerings that mix values first.

'banded' multiplies every input value of a row by the band's zeros, and
'winograd' adds and subtracts the values of a tile: with an Inf or a NaN in x
or the kernel, both produce NaN in outputs where lax gives Inf, or where lax
gives a finite number. The fix is to run such inputs through a lowering that
multiplies each weight only by the values it sees ('vmap'), chosen at run time
by a lax.cond on one cheap reduction.

For 'banded' the cond sits inside a custom JVP (`finite_or_fallback`): the
value is the fast result or the fallback, and the derivative (forward, and
reverse by JAX's transposition) is always the fast lowering's own. JAX never
differentiates the cond itself: a differentiated cond made compiled gradients
up to 1.8x slower on a CPU (LeNet conv2: 17 ms against 9.5 ms), even when its
fallback never ran. The gradient for inputs that are not all finite is then
the fast lowering's, which is non-finite wherever lax's is, though not always
the same non-finite value. 'winograd', whose derivative is a custom VJP of its
own, calls `pick_finite` inside that VJP's forward function instead (JAX
cannot take a JVP of a custom VJP).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jconv._typing import Array

Conv = Callable[[Array, Array], Array]  # (x, w) -> y


def _all_finite(x: Array, w: Array) -> Array:
    """False if x or w holds an Inf or a NaN (and, rarely, if a sum overflows).

    A sum is non-finite whenever one of its terms is, and one float reduction
    ran faster on a CPU than isfinite(x).all() (LeNet conv2 forward: about 10%
    of the whole convolution). A sum that overflows on finite inputs only sends
    them to the exact fallback.
    """

    def total(a: Array) -> Array:
        return jnp.sum(a, dtype=jnp.promote_types(a.dtype, jnp.float32))

    return jnp.isfinite(total(x)) & jnp.isfinite(total(w))


def pick_finite(fallback: Conv, x: Array, w: Array, y: Array) -> Array:
    """y (computed from x and w) if x and w are all finite, else fallback(x, w).

    Under vmap the predicate is batched and the cond becomes a select: both run.
    """
    return jax.lax.cond(
        _all_finite(x, w), lambda x, w, y: y, lambda x, w, y: fallback(x, w), x, w, y
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def finite_or_fallback(fast: Conv, fallback: Conv, x: Array, w: Array) -> Array:
    """fast(x, w) when x and w are all finite, else fallback(x, w); derivatives are fast's."""
    return pick_finite(fallback, x, w, fast(x, w))


@finite_or_fallback.defjvp
def _jvp(fast: Conv, fallback: Conv, primals, tangents) -> tuple[Array, Array]:
    y, y_dot = jax.jvp(fast, primals, tangents)
    return pick_finite(fallback, *primals, y), y_dot
