"""The lesson's four functions: multi-channel convolution built from corr2d.

The lesson (d2l, "multiple input and multiple output channels") writes a
convolution with ``ci`` input and ``co`` output channels as

    Y_o = sum_i X_i ⋆ W_(o,i)      X: (ci, nh, nw)  W: (co, ci, kh, kw)  Y: (co, mh, mw)

where ``⋆`` is the single-channel cross-correlation. Each function here is one
line of that sentence, unbatched and channel-first, exactly as the lesson
states the shapes. Batching comes from ``jax.vmap``, as everywhere in JAX.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jconv._checks import check_float_dtype, check_ndim, check_window
from jconv._typing import Array, ArrayLike

__all__ = [
    "corr2d",
    "corr2d_multi_in",
    "corr2d_multi_in_out",
    "corr2d_multi_in_out_1x1",
]


def corr2d_strided(
    x: Array, k: Array, stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1)
) -> Array:
    """Single-channel cross-correlation with stride and kernel dilation (unchecked).

    x: (nh, nw); k: (kh, kw) -> (mh, mw) with
    ``mh = (nh - (kh - 1) * dh - 1) // sh + 1`` (likewise mw). No kernel flip.

    Vectorised over the kernel taps: each of the ``kh * kw`` taps contributes
    ``k[i, j]`` times a strided window of ``x``, so the traced program has one
    multiply-add per tap, never one operation per output pixel.
    """
    (nh, nw), (kh, kw) = x.shape, k.shape
    (sh, sw), (dh, dw) = stride, dilation
    mh = (nh - (kh - 1) * dh - 1) // sh + 1
    mw = (nw - (kw - 1) * dw - 1) // sw + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            window = jax.lax.slice(
                x,
                (i * dh, j * dw),
                (i * dh + (mh - 1) * sh + 1, j * dw + (mw - 1) * sw + 1),
                (sh, sw),
            )
            term = k[i, j] * window
            y = term if y is None else y + term
    assert y is not None
    return y


def corr2d(x: ArrayLike, k: ArrayLike) -> Array:
    """Two-dimensional cross-correlation of one channel (no kernel flip).

    Args:
      x: (nh, nw) input.
      k: (kh, kw) kernel.

    Returns:
      (nh - kh + 1, nw - kw + 1): ``y[a, b] = sum_ij x[a + i, b + j] * k[i, j]``.

    >>> import jax.numpy as jnp, jconv
    >>> x = jnp.arange(9.0).reshape(3, 3)
    >>> jconv.corr2d(x, jnp.array([[0.0, 1.0], [2.0, 3.0]]))
    Array([[19., 25.],
           [37., 43.]], dtype=float32)
    """
    x, k = jnp.asarray(x), jnp.asarray(k)
    check_ndim("x", x.shape, 2, "(nh, nw)")
    check_ndim("k", k.shape, 2, "(kh, kw)")
    check_float_dtype("x", x.dtype)
    check_float_dtype("k", k.dtype)
    check_window(x.shape, k.shape)
    return corr2d_strided(x, k)


def corr2d_multi_in(x: ArrayLike, k: ArrayLike) -> Array:
    """Sum over input channels of single-channel cross-correlations.

    Args:
      x: (ci, nh, nw) input.
      k: (ci, kh, kw) one 2-D kernel per input channel.

    Returns:
      (mh, mw) = (nh - kh + 1, nw - kw + 1): ``sum_i corr2d(x[i], k[i])``.
    """
    x, k = jnp.asarray(x), jnp.asarray(k)
    check_ndim("x", x.shape, 3, "(ci, nh, nw)")
    check_ndim("k", k.shape, 3, "(ci, kh, kw)")
    check_float_dtype("x", x.dtype)
    check_float_dtype("k", k.dtype)
    if x.shape[0] != k.shape[0]:
        raise ValueError(
            f"x has {x.shape[0]} input channels (shape {x.shape}) but k has "
            f"{k.shape[0]} (shape {k.shape})"
        )
    check_window(x.shape, k.shape)
    return jnp.sum(jax.vmap(corr2d_strided)(x, k), axis=0)


def corr2d_multi_in_out(x: ArrayLike, k: ArrayLike) -> Array:
    """Multi-input, multi-output cross-correlation: ``jax.vmap`` over output channels.

    Args:
      x: (ci, nh, nw) input.
      k: (co, ci, kh, kw) one 3-D kernel per output channel.

    Returns:
      (co, mh, mw): ``y[o] = corr2d_multi_in(x, k[o])``.
    """
    x, k = jnp.asarray(x), jnp.asarray(k)
    check_ndim("x", x.shape, 3, "(ci, nh, nw)")
    check_ndim("k", k.shape, 4, "(co, ci, kh, kw)")
    if x.shape[0] != k.shape[1]:
        raise ValueError(
            f"x has {x.shape[0]} input channels (shape {x.shape}) but k expects "
            f"{k.shape[1]} (shape {k.shape}, layout (co, ci, kh, kw))"
        )
    return jax.vmap(corr2d_multi_in, in_axes=(None, 0))(x, k)


def corr2d_multi_in_out_1x1(x: ArrayLike, k: ArrayLike) -> Array:
    """A 1x1 convolution computed as one matrix product.

    With ``kh = kw = 1`` no spatial pattern is seen; each pixel's channels are
    mixed by the (co, ci) matrix, so the whole layer is ``K @ X`` with X
    flattened to (ci, nh * nw).

    Args:
      x: (ci, nh, nw) input.
      k: (co, ci, 1, 1) kernel.

    Returns:
      (co, nh, nw), equal to ``corr2d_multi_in_out(x, k)``.
    """
    x, k = jnp.asarray(x), jnp.asarray(k)
    check_ndim("x", x.shape, 3, "(ci, nh, nw)")
    check_ndim("k", k.shape, 4, "(co, ci, 1, 1)")
    check_float_dtype("x", x.dtype)
    check_float_dtype("k", k.dtype)
    ci, nh, nw = x.shape
    co = k.shape[0]
    if k.shape[1:] != (ci, 1, 1):
        raise ValueError(
            f"k must have shape (co, ci, 1, 1) = ({co}, {ci}, 1, 1) for x of shape "
            f"{x.shape}, got {k.shape}"
        )
    # Full float32 products, as corr2d_multi_in_out's elementwise ones: at the default
    # precision a GPU rounds float32 operands to TF32 and the two would disagree.
    y = jnp.matmul(k.reshape(co, ci), x.reshape(ci, nh * nw), precision=jax.lax.Precision.HIGHEST)
    return y.reshape(co, nh, nw)
