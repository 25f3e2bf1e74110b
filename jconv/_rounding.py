"""Rounding float32 results to bfloat16 in integer operations, where XLA's CPU convert is slow.

XLA's CPU backend fuses a float32 -> bfloat16 convert into the loop that computes its
operand, and in the elementwise loops of the depthwise lowering (a channel multiplier,
or one input channel with several outputs) that fused convert made the whole loop run
4x to 5x slower than the same loop with a float32 result (LeNet's first layer by
'taps': 5.6 to 7.3 ms against 1.5; BENCHMARKS.md, session 8). The same rounding written
as integer operations on the float32 bits fuses without that cost and gives the same
bits: round to nearest, ties to even, Inf and overflow to Inf, and a NaN to the quiet
NaN of its sign, as XLA's convert does (tests/test_rounding.py compares every class of
value bit for bit).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jconv._typing import Array


def float32_to_bfloat16(a: Array) -> Array:
    """a: float32 -> bfloat16, rounded to nearest even (the bits of a.astype(bfloat16))."""
    bits = jax.lax.bitcast_convert_type(a, jnp.uint32)
    # adding 0x7FFF, plus 1 where the kept part is odd, carries into the kept 16 bits
    # exactly when the dropped 16 bits are above half, or half with an odd kept part
    rounded = (bits + ((bits >> 16) & 1) + jnp.uint32(0x7FFF)) >> 16
    quiet_nan = ((bits >> 16) & jnp.uint32(0x8000)) | jnp.uint32(0x7FC0)
    rounded = jnp.where(jnp.isnan(a), quiet_nan, rounded)
    return jax.lax.bitcast_convert_type(rounded.astype(jnp.uint16), jnp.bfloat16)


def round_to(a: Array, dtype: Any) -> Array:
    """a.astype(dtype), with float32 -> bfloat16 done by `float32_to_bfloat16`."""
    if a.dtype == jnp.float32 and jnp.dtype(dtype) == jnp.bfloat16:
        return float32_to_bfloat16(a)
    return a.astype(dtype)
