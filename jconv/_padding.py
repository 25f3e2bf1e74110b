"""Filling the padded border of x: zeros, circular, reflect or replicate.

The modes mean what they mean in torch.nn.Conv2d; jnp.pad does the work.
`zero_pad_or_crop` is the plain zero fill the lowerings use internally, where
an amount may also be negative (a crop), as in lax.pad.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._layouts import LAYOUT_INFO
from jconv._typing import Array

_JNP_PAD_MODE = {
    "zeros": "constant",
    "circular": "wrap",
    "reflect": "reflect",
    "replicate": "edge",
}


def zero_pad_or_crop(x: Array, widths: Sequence[tuple[int, int]]) -> Array:
    """Zero-pad each axis of x by (low, high); a negative amount crops there instead."""
    return jax.lax.pad(x, jnp.zeros((), x.dtype), [(lo, hi, 0) for lo, hi in widths])


def pad_input(x: Array, spec: ConvSpec) -> Array:
    """Pad a batched x on its spatial axes by spec.pads, filled per spec.padding_mode."""
    if spec.pads == ((0, 0), (0, 0)):
        return x
    widths = [(0, 0)] * 4
    for axis, p in zip(LAYOUT_INFO[spec.layout].spatial_axes, spec.pads):
        widths[axis] = p
    return jnp.pad(x, widths, mode=_JNP_PAD_MODE[spec.padding_mode])
