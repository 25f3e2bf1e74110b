"""Keeping lax's NaN, Inf and overflow behaviour in lowerings that mix values first.

'banded' multiplies every input value of a row by the band's zeros, and
'winograd' adds and subtracts the values of a tile: with an Inf or a NaN in an
operand both produce NaN where lax gives Inf, or where lax gives a finite
number; and a transform's sum of large finite values can overflow where the
convolution's own sum does not. Either way the fast result then holds a
non-finite value, since no sum or product turns one back into a finite
number. So the guard looks at the result alone: if it is all finite it is
right, and otherwise an exact computation (one that forms only the products
the definition forms, in at least float32) runs instead, chosen at run time by
a lax.cond on one reduction. Finite inputs whose fast result overflows cost a
second computation, never accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jconv._typing import Array


def is_all_finite(a: Array) -> Array:
    """False if a holds an Inf or a NaN (and, rarely, if its sum overflows).

    A sum is non-finite whenever one of its terms is, and one float reduction
    ran faster on a CPU than isfinite(a).all(). The sum is taken in at least
    float32, chosen by width (JAX's strict promotion refuses float16 with float32).
    """
    acc = a.dtype if np.dtype(a.dtype).itemsize >= 4 else np.dtype(np.float32)
    return jnp.isfinite(jnp.sum(a, dtype=acc))


def finite_or_exact(result: Array, exact: Callable[..., Array], *operands: Array) -> Array:
    """result (computed from operands) if it is all finite, else exact(*operands)."""
    return jax.lax.cond(
        is_all_finite(result),
        lambda result, *operands: result,
        lambda result, *operands: exact(*operands),
        result,
        *operands,
    )
