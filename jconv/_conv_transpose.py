"""conv_transpose2d: the transposed convolution, as conv2d with input dilation.

A transposed convolution with stride s is the correlation of x dilated by s
(s - 1 zeros between pixels), padded, with the kernel flipped and its two
channel axes swapped: the gradient of a strided convolution with respect to
its input, used forward as a learned upsampling. conv2d's input_dilation runs
it without multiplying by the inserted zeros (jconv/_subpixel.py), with every
method.
"""

from __future__ import annotations

import operator
from typing import Any

import jax.numpy as jnp

from jconv._checks import check_transpose_args
from jconv._conv2d import conv2d, whole_parameters
from jconv._layouts import transposed_kernel
from jconv._typing import Array, ArrayLike, DTypeLike, IntLike, IntPair, PaddingLike, PrecisionLike


def conv_transpose2d(
    x: ArrayLike,
    kernel: ArrayLike,
    bias: ArrayLike | None = None,
    *,
    stride: IntPair = 1,
    padding: PaddingLike = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: IntLike = 1,
    layout: str = "NCHW",
    transpose_kernel: bool = True,
    precision: PrecisionLike = None,
    preferred_element_type: DTypeLike | None = None,
    method: str = "auto",
    out_sharding: Any = None,
) -> Array:
    """2-D transposed convolution ("deconvolution"), torch.nn.functional.conv_transpose2d's.

    Args:
      x: 'NCHW': (N, C, H, W) or (C, H, W); 'NHWC': (N, H, W, C) or (H, W, C).
      kernel: with transpose_kernel=True (torch's), the kernel of the forward
        convolution that this one transposes: 'NCHW' (C, O/groups, kh, kw) as in
        torch, 'NHWC' (kh, kw, O/groups, C) as Flax's ConvTranspose with
        transpose_kernel=True. With transpose_kernel=False (lax.conv_transpose's
        default), conv2d's own kernel, correlated with the dilated input as it
        is: 'NCHW' (O, C/groups, kh, kw), 'NHWC' (kh, kw, C/groups, O).
      bias: optional (O,).
      stride: the upsampling factor, an int or a pair.
      padding: the forward convolution's padding: an int, a pair or ((top,
        bottom), (left, right)), at least 0, takes ``dilation * (k - 1) - p``
        rows of zeros off each side (torch's meaning, which keeps this the
        inverse of conv2d's shape change); 'SAME' or 'VALID' as in
        lax.conv_transpose ('SAME': H * stride rows).
      output_padding: extra rows (columns) at the bottom (right), at least 0 and
        smaller than the stride or the dilation, as in torch: what picks one
        of the input sizes that a strided conv2d maps to the same output size.
      dilation: kernel dilation. groups: as in torch (C and O divisible by it).
      layout, precision, preferred_element_type, method, out_sharding: as in
        conv2d. The method runs each sub-pixel phase (jconv/_subpixel.py); 'xla'
        is lax.

    Returns:
      (N, O, Ho, Wo) or (N, Ho, Wo, O) (without N if x had none), with
      ``Ho = (H - 1) * sh - top - bottom + dh * (kh - 1) + output_padding + 1``
      for explicit padding.

    Raises:
      ValueError, TypeError: for a bad argument, before anything reaches XLA.

    >>> import jax, jconv
    >>> x = jax.random.normal(jax.random.key(0), (2, 8, 16, 16))    # N, C, H, W
    >>> w = jax.random.normal(jax.random.key(1), (8, 4, 4, 4))      # C, O, kh, kw (torch's)
    >>> jconv.conv_transpose2d(x, w, stride=2, padding=1).shape     # DCGAN's 2x upsampling
    (2, 4, 32, 32)
    """
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    t = check_transpose_args(
        x.shape,
        kernel.shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        transpose_kernel=transpose_kernel,
    )
    bias = None if bias is None else jnp.asarray(bias)
    kernel, bias = whole_parameters(x, kernel, bias, out_sharding)  # before it is rearranged
    if transpose_kernel:
        kernel = transposed_kernel(kernel, operator.index(groups), layout)
    return conv2d(
        x,
        kernel,
        bias,
        stride=1,
        padding=t.pads,
        dilation=t.dilation,
        groups=groups,
        layout=layout,
        precision=precision,
        preferred_element_type=preferred_element_type,
        method=method,
        input_dilation=t.input_dilation,
        out_sharding=out_sharding,
    )
