"""Type aliases shared across jconv, named for what the functions accept.

The argument aliases are as wide as jconv/_checks.py's rules: an int is anything
`operator.index` takes (a Python int or a NumPy integer), a pair any sequence (a
tuple, a list) of two. What a type cannot say is checked at run time: a
sequence's length, and bools, which are refused where an int is asked for (True
is not a stride of 1) although Python counts them as ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import SupportsIndex

import jax

Array = jax.Array  # a JAX array (or tracer)
ArrayLike = jax.typing.ArrayLike  # anything jnp.asarray accepts
DTypeLike = jax.typing.DTypeLike
PrecisionLike = jax.lax.PrecisionLike  # None, a Precision or its name, a pair, an algorithm

IntLike = SupportsIndex  # an int or a NumPy integer (not a bool)
IntPair = IntLike | Sequence[IntLike]  # one int for both spatial axes, or a pair (h, w)
ShapeLike = Sequence[IntLike]  # a shape as given: a tuple, a list, an array's .shape
# conv2d's `padding`: 'VALID', 'SAME' or 'SAME_LOWER'; an int for every side; a pair
# (ph, pw), each for both sides of its axis; or ((top, bottom), (left, right)).
PaddingLike = str | IntLike | Sequence[IntLike] | Sequence[Sequence[IntLike]]

Pads = tuple[tuple[int, int], tuple[int, int]]  # resolved: ((top, bottom), (left, right))
Shape = tuple[int, ...]  # resolved: a shape as jconv keeps it

__all__ = [
    "Array",
    "ArrayLike",
    "DTypeLike",
    "IntLike",
    "IntPair",
    "PaddingLike",
    "Pads",
    "PrecisionLike",
    "Shape",
    "ShapeLike",
]
