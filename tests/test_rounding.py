"""float32 -> bfloat16 in integer operations (jconv/_rounding.py): the bits of astype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jconv._rounding import float32_to_bfloat16, round_to

SPECIAL_BITS = [
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FA12345,  # NaNs: quiet, signalling
    0x7F800000, 0xFF800000,  # infinities
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000,  # the largest finite, about to overflow
    0x00000000, 0x80000000, 0x00000001, 0x00008000, 0x00018000, 0x007FFFFF,  # zeros, tiny
    0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3F807FFF, 0xBF808000, 0xBF818000,  # ties, near ties
]  # fmt: skip


def _bits(a) -> np.ndarray:
    return np.asarray(jax.lax.bitcast_convert_type(a, jnp.uint16))


@pytest.mark.parametrize("layout", ["special", "random"])
def test_same_bits_as_astype(layout):
    if layout == "special":
        x = np.array(SPECIAL_BITS, np.uint32).view(np.float32)
    else:  # every exponent, and every pattern of the 16 dropped bits
        rng = np.random.default_rng(11)
        x = rng.integers(0, 2**32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    got = jax.jit(float32_to_bfloat16)(x)
    want = jax.jit(lambda x: x.astype(jnp.bfloat16))(x)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(_bits(got), _bits(want))


def test_round_to_only_replaces_float32_to_bfloat16():
    x = jnp.asarray(np.random.default_rng(12).standard_normal(64), jnp.float32)
    assert round_to(x, jnp.bfloat16).dtype == jnp.bfloat16
    for dtype in (jnp.float16, jnp.float32):
        np.testing.assert_array_equal(np.asarray(round_to(x, dtype)), np.asarray(x.astype(dtype)))
    b = x.astype(jnp.bfloat16)
    np.testing.assert_array_equal(
        np.asarray(round_to(b, jnp.float32)), np.asarray(b.astype(jnp.float32))
    )
