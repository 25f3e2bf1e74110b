"""jconv.nnx.Conv and ConvTranspose: drop-in replacements for Flax's that run jconv.conv2d.

Swap the class and nothing else changes: the constructor takes Flax's
arguments (plus ``method=``), the module holds the same ``kernel`` and ``bias``
Params (same names, shapes, dtypes, metadata, and values from the same Rngs),
so states and checkpoints move between the two both ways.

    >>> import jax, jconv
    >>> from flax import nnx
    >>> conv = jconv.nnx.Conv(3, 8, (3, 3), strides=2, padding="CIRCULAR", rngs=nnx.Rngs(0))
    >>> x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))     # N, H, W, C
    >>> conv(x).shape
    (2, 8, 8, 8)
    >>> ref = nnx.Conv(3, 8, (3, 3), strides=2, padding="CIRCULAR", rngs=nnx.Rngs(0))
    >>> bool((ref.kernel[...] == conv.kernel[...]).all())
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes
from flax.typing import Dtype, Initializer, PaddingLike, PrecisionLike, PromoteDtypeFn

from jconv._flax_common import (
    apply_mask,
    canonical_kernel_size,
    canonical_padding,
    canonical_transpose_padding,
    check_mask,
    check_supported,
    custom_flax_conv,
    default_bias_init,
    default_kernel_init,
    flax_conv,
    flax_conv_transpose,
    kernel_shape,
    lax_partial_keywords,
)
from jconv._typing import Array

__all__ = ["Conv", "ConvTranspose"]


class Conv(nnx.Module):
    """A convolution layer holding Flax NNX parameters and calling jconv.conv2d.

    Same arguments and defaults as ``flax.nnx.Conv`` (see its documentation),
    plus ``method``: which of jconv.METHODS runs the convolution ('auto' picks
    per platform from measured rules; 'xla' is lax.conv_general_dilated).

    Parameters:
      kernel: Param (*kernel_size, in_features // feature_group_count, out_features),
        i.e. (kh, kw, C/groups, O) for a 2-D convolution and (k, C/groups, O) for 1-D.
      bias: Param (out_features,), or None when use_bias=False.

    Call with inputs channels-last: (*batch, H, W, C) for a 2-D kernel_size,
    (*batch, L, C) for a 1-D one, with any number of batch axes (none included);
    the output is (*batch, mh, mw, O) or (*batch, mL, O).

    Padding is Flax's: 'SAME', 'VALID' (and 'SAME_LOWER'), 'CIRCULAR' and
    'REFLECT' (which pad ((w - 1) // 2, w // 2) for the dilated window w, whatever
    the stride), 'CAUSAL' (1-D only), an int, or one int or (low, high) pair per
    spatial axis (negative amounts crop).

    input_dilation (lax's lhs_dilation) runs as conv2d's, every phase through
    ``method`` (jconv/_subpixel.py); as in Flax, padding must then be explicit.

    conv_general_dilated: lax's (the default) or
    ``functools.partial(jax.lax.conv_general_dilated, preferred_element_type=...,
    precision=...)`` run jconv.conv2d, the partial's keywords taken as Flax's call
    would take them (the module's precision, and its preferred_element_type when
    set, override the partial's). Any other callable is called as Flax calls it,
    and then jconv's lowerings are bypassed: ``method`` does nothing.

    Raises NotImplementedError at construction for a kernel_size of length
    other than 1 or 2 (3-D convolutions: use Flax's own Conv). Other errors are
    Flax's, of the same type and at the same moment, except that in_features not divisible by
    feature_group_count is a ValueError at construction (Flax asserts at call),
    and that a bool where an int is asked for (strides, dilations, padding
    amounts, feature_group_count) is refused, as conv2d refuses it, where Flax
    takes True as 1.

    >>> import jax, jconv
    >>> from flax import nnx
    >>> conv = jconv.nnx.Conv(4, 6, 3, padding="CAUSAL", rngs=nnx.Rngs(0))   # 1-D
    >>> conv.kernel.shape
    (3, 4, 6)
    >>> conv(jax.random.normal(jax.random.key(1), (10, 4))).shape      # (L, C), no batch
    (10, 6)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = 1,
        *,
        padding: PaddingLike = "SAME",
        input_dilation: int | Sequence[int] | None = 1,
        kernel_dilation: int | Sequence[int] | None = 1,
        feature_group_count: int = 1,
        use_bias: bool = True,
        mask: Array | None = None,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike = None,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        conv_general_dilated: Any = jax.lax.conv_general_dilated,
        promote_dtype: PromoteDtypeFn = dtypes.promote_dtype,
        preferred_element_type: Dtype | None = None,
        rngs: nnx.Rngs,
        kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
        method: str = "auto",
    ):
        kernel_size = canonical_kernel_size(kernel_size)
        check_supported(kernel_size, method, input_dilation=input_dilation)
        self.kernel_shape = kernel_shape(
            kernel_size, in_features, out_features, feature_group_count
        )
        # Flax's order of key draws: the kernel's, then (with a bias) the bias's.
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), self.kernel_shape, param_dtype), **kernel_metadata
        )
        self.bias: nnx.Param[Array] | None
        if use_bias:
            self.bias = nnx.Param(
                bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata
            )
        else:
            self.bias = nnx.data(None)

        self.in_features = in_features
        self.out_features = out_features
        self.kernel_size = kernel_size
        self.strides = strides
        self.padding = padding
        self.input_dilation = input_dilation
        self.kernel_dilation = kernel_dilation
        self.feature_group_count = feature_group_count
        self.use_bias = use_bias
        self.mask = mask
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.conv_general_dilated = conv_general_dilated
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type
        self.method = method

    def __call__(self, inputs: Array, out_sharding: Any = None) -> Array:
        """Convolve channels-last inputs: (*batch, H, W, C) -> (*batch, mh, mw, O) (1-D: L, mL).

        out_sharding: as in Flax, the sharding of the result (batch axes flattened into
        one), for JAX's explicit sharding mode; jconv reshards its result to it.
        """
        # Attributes may have been changed since construction: check again, cheaply.
        check_supported(self.kernel_size, self.method, input_dilation=self.input_dilation)
        padding = canonical_padding(self.padding, self.kernel_size)
        check_mask(self.mask, self.kernel_shape)
        kernel = apply_mask(self.kernel[...], self.mask)
        bias = self.bias[...] if self.bias is not None else None
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        args: dict[str, Any] = dict(
            padding=padding,
            strides=self.strides,
            input_dilation=self.input_dilation,
            kernel_dilation=self.kernel_dilation,
            feature_group_count=self.feature_group_count,
            precision=self.precision,
        )
        keywords = lax_partial_keywords(self.conv_general_dilated)
        if keywords is None:  # a custom function: Flax's call, with Flax's extra keywords
            conv_kwargs: dict[str, Any] = {"out_sharding": out_sharding}
            if self.preferred_element_type is not None:
                conv_kwargs["preferred_element_type"] = self.preferred_element_type
            return custom_flax_conv(
                self.conv_general_dilated,
                inputs,
                kernel,
                bias if self.use_bias else None,
                conv_kwargs=conv_kwargs,
                **args,
            )
        preferred = self.preferred_element_type
        if preferred is None:  # Flax passes its own only when set, over the partial's
            preferred = keywords.get("preferred_element_type")
        return flax_conv(
            inputs,
            kernel,
            bias if self.use_bias else None,
            preferred_element_type=preferred,
            method=self.method,
            out_sharding=out_sharding,
            **args,
        )


class ConvTranspose(nnx.Module):
    """A transposed convolution layer holding Flax NNX parameters, calling jconv.conv2d.

    Same arguments and defaults as ``flax.nnx.ConvTranspose`` (lax.conv_transpose's
    semantics; see its documentation), plus ``method``: which of jconv.METHODS
    runs each sub-pixel phase of the transposed convolution ('xla': lax itself).

    Parameters:
      kernel: Param (*kernel_size, in_features, out_features), or with
        transpose_kernel=True (*kernel_size, out_features, in_features).
      bias: Param (out_features,), or None when use_bias=False.

    Call with inputs channels-last, (*batch, H, W, C) or (*batch, L, C); the
    output is (*batch, Ho, Wo, O). Padding: 'SAME' (H * stride), 'VALID',
    'CIRCULAR' (periodic, H * stride) as in lax.conv_transpose and Flax, or
    explicit (low, high) amounts of the dilated input (negative ones crop).
    Raises NotImplementedError at construction for a kernel_size of length
    other than 1 or 2.

    >>> import jax, jconv
    >>> from flax import nnx
    >>> up = jconv.nnx.ConvTranspose(16, 8, (2, 2), strides=2, rngs=nnx.Rngs(0))
    >>> up(jax.random.normal(jax.random.key(1), (4, 8, 8, 16))).shape   # 2x upsampling
    (4, 16, 16, 8)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int | Sequence[int],
        strides: int | Sequence[int] | None = None,
        *,
        padding: PaddingLike = "SAME",
        kernel_dilation: int | Sequence[int] | None = None,
        use_bias: bool = True,
        mask: Array | None = None,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        precision: PrecisionLike | None = None,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        transpose_kernel: bool = False,
        promote_dtype: PromoteDtypeFn = dtypes.promote_dtype,
        preferred_element_type: Dtype | None = None,
        rngs: nnx.Rngs,
        kernel_metadata: Mapping[str, Any] = MappingProxyType({}),
        bias_metadata: Mapping[str, Any] = MappingProxyType({}),
        method: str = "auto",
    ):
        kernel_size = canonical_kernel_size(kernel_size)
        check_supported(kernel_size, method)
        channels = (out_features, in_features) if transpose_kernel else (in_features, out_features)
        self.kernel_shape = (*kernel_size, *channels)
        # Flax's order of key draws: the kernel's, then (with a bias) the bias's.
        self.kernel = nnx.Param(
            kernel_init(rngs.params(), self.kernel_shape, param_dtype), **kernel_metadata
        )
        self.bias: nnx.Param[Array] | None
        if use_bias:
            self.bias = nnx.Param(
                bias_init(rngs.params(), (out_features,), param_dtype), **bias_metadata
            )
        else:
            self.bias = nnx.data(None)

        self.kernel_size = kernel_size
        self.in_features = in_features
        self.out_features = out_features
        self.strides = strides
        self.padding = padding
        self.kernel_dilation = kernel_dilation
        self.use_bias = use_bias
        self.mask = mask
        self.dtype = dtype
        self.param_dtype = param_dtype
        self.precision = precision
        self.transpose_kernel = transpose_kernel
        self.promote_dtype = promote_dtype
        self.preferred_element_type = preferred_element_type
        self.method = method

    def __call__(self, inputs: Array) -> Array:
        """(*batch, H, W, C) -> (*batch, Ho, Wo, O) (1-D: L, Lo)."""
        check_supported(self.kernel_size, self.method)
        check_mask(self.mask, self.kernel_shape)
        kernel = apply_mask(self.kernel[...], self.mask)
        padding = canonical_transpose_padding(self.padding, self.kernel_size)
        bias = self.bias[...] if self.bias is not None else None
        inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
        return flax_conv_transpose(
            inputs,
            kernel,
            bias if self.use_bias else None,
            padding=padding,
            strides=self.strides,
            kernel_dilation=self.kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
            method=self.method,
        )
