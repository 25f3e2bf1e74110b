"""Opt-in pytest plugin: a GPU's TF32 products on the CPU, to find tests that would fail there.

    python -m pytest -p tests.tf32_sim tests/test_conv2d.py

On an NVIDIA GPU (Ampere and later) a float32 matrix product or convolution at
the default precision rounds its operands to TF32 (10 bits of mantissa, about
3 decimal digits); a CPU never does, so a test that compares a default-precision
result with a Precision.HIGHEST reference at float32 tolerance passes here and
fails there. This plugin rounds the float32 operands of every dot_general and
conv_general_dilated bound at the default precision (not under
jax.default_matmul_precision('highest') or 'float32') with
lax.reduce_precision(x, 8, 10), as the tensor cores do. It rounds everywhere,
the sharding tests' CPU computations included, so it errs on the strict side.
Not part of the suite; run it on the tests a change touches.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

TF32 = {"exponent_bits": 8, "mantissa_bits": 10}
FULL = ("highest", "float32")  # jax.default_matmul_precision values that keep float32


def _default_precision(precision) -> bool:
    if str(jax.config.jax_default_matmul_precision).lower() in FULL:
        return False
    if precision is None:
        return True
    pair = precision if isinstance(precision, tuple) else (precision,)
    return all(p in (None, jax.lax.Precision.DEFAULT) for p in pair)


def _round_operands(primitive) -> None:
    bind = primitive.bind

    def rounded_bind(*args, **params):
        if _default_precision(params.get("precision")):
            args = tuple(
                jax.lax.reduce_precision(a, **TF32)
                if getattr(a, "dtype", None) == jnp.float32
                else a
                for a in args
            )
        return bind(*args, **params)

    primitive.bind = rounded_bind


_round_operands(jax.lax.dot_general_p)
_round_operands(jax.lax.conv_general_dilated_p)
