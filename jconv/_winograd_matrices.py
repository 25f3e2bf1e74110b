"""The Winograd (Toom-Cook) matrices of minimal filtering F(m, r), built from their points.

A 1-D correlation of a length-(m + r - 1) input tile d with an r-tap filter g,
giving m outputs, is

    y = AT @ ((G @ g) * (BT @ d))          AT: (m, a)   G: (a, r)   BT: (a, a),  a = m + r - 1

with a multiplications instead of m * r. The construction evaluates the
polynomials of d and g at a - 1 points and at infinity, multiplies there and
interpolates back: AT holds the powers of the points, G the filter's values
divided by the Lagrange denominators, and BT whatever makes the identity hold,
found here by solving that linear system and snapping the solution to the
small rationals it is made of. The points are the small
numbers 0, 1, -1, 2, -2, ..., which keep the transforms' rounding error low.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import NamedTuple

import numpy as np

POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)


class WinogradMatrices(NamedTuple):
    at: np.ndarray  # (m, a): back from the transformed domain to m outputs
    g: np.ndarray  # (a, r): filter transform
    bt: np.ndarray  # (a, a): input transform


def _exact(values: np.ndarray) -> np.ndarray:
    """Snap floating-point solutions to the small rationals they stand for (zeros exact)."""
    snap = np.vectorize(lambda v: float(Fraction(float(v)).limit_denominator(1 << 10)))
    return snap(values).astype(np.float64)


@functools.cache
def winograd_matrices(m: int, r: int) -> WinogradMatrices:
    """AT, G and BT of F(m, r), in float64, with exact small-rational entries.

    >>> import numpy as np
    >>> at, g, bt = winograd_matrices(2, 3)
    >>> d, k = np.arange(4.0), np.array([1.0, -2.0, 0.5])
    >>> np.allclose(at @ ((g @ k) * (bt @ d)), np.correlate(d, k, "valid"))
    True
    """
    a = m + r - 1
    if m < 1 or r < 1 or a - 1 > len(POINTS):
        raise ValueError(f"F({m}, {r}) needs {a - 1} points; at most {len(POINTS)} are known")
    points = np.array(POINTS[: a - 1])
    at = np.zeros((m, a))
    g = np.zeros((a, r))
    for j, p in enumerate(points):
        at[:, j] = p ** np.arange(m)
        denominator = np.prod([p - q for q in points if q != p])
        g[j] = p ** np.arange(r) / denominator
    at[m - 1, a - 1] = 1.0  # the point at infinity: the leading coefficients
    g[a - 1, r - 1] = 1.0
    # sum_j at[i, j] g[j, k] bt[j, l] = 1 where l == i + k, else 0, for all i < m, k < r, l < a.
    system = np.einsum("ij,jk->ikj", at, g).reshape(m * r, a)
    target = np.zeros((m * r, a))
    for i in range(m):
        for k in range(r):
            target[i * r + k, i + k] = 1.0
    bt = _exact(np.linalg.lstsq(system, target, rcond=None)[0])
    if not np.allclose(system @ bt, target, rtol=0.0, atol=1e-12):
        raise AssertionError(f"no exact input transform found for F({m}, {r})")  # pragma: no cover
    return WinogradMatrices(_exact(at), _exact(g), bt)
