"""Type aliases shared across jconv."""

from __future__ import annotations

import jax

Array = jax.Array  # a JAX array (or tracer)
ArrayLike = jax.typing.ArrayLike  # anything jnp.asarray accepts
DTypeLike = jax.typing.DTypeLike
IntPair = int | tuple[int, int]  # an int used for both spatial axes, or (h, w)
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
PaddingLike = str | int | tuple[int, int] | Pads  # what conv2d's `padding` accepts
Shape = tuple[int, ...]

__all__ = ["Array", "ArrayLike", "DTypeLike", "IntPair", "PaddingLike", "Pads", "Shape"]
