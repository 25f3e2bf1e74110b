"""jconv.linen.Conv and ConvTranspose: drop-in replacements for Flax's that run jconv.conv2d.

Swap the class and nothing else changes: the same attributes and defaults
(plus ``method``), the same ``params`` collection ({'kernel', 'bias'}, same
shapes, dtypes and values from the same PRNG key and module path), so
variables and checkpoints move between the two both ways.

    >>> import jax, jconv
    >>> import flax.linen as nn
    >>> x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))     # N, H, W, C
    >>> conv = jconv.linen.Conv(features=8, kernel_size=(3, 3), strides=2)
    >>> variables = conv.init(jax.random.key(0), x)
    >>> conv.apply(variables, x).shape
    (2, 8, 8, 8)
    >>> ref = nn.Conv(features=8, kernel_size=(3, 3), strides=2)
    >>> bool((ref.init(jax.random.key(0), x)["params"]["kernel"] ==
    ...       variables["params"]["kernel"]).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from flax.typing import Dtype, Initializer, PaddingLike, PrecisionLike

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


class PromoteDtype(Protocol):
    """flax.linen.dtypes.promote_dtype's call: the arrays as arguments, a list of them back.

    flax.typing.PromoteDtypeFn, which Flax's linen modules name, describes nnx's
    function instead, which takes and returns one tuple.
    """

    def __call__(self, *args: Any, dtype: Any = None, inexact: bool = True) -> list[Any]: ...


class Conv(nn.Module):
    """A convolution layer with Flax Linen parameters, calling jconv.conv2d.

    Same attributes, order and defaults as ``flax.linen.Conv`` (see its
    documentation), plus ``method``: which of jconv.METHODS runs the convolution
    ('auto' picks per platform from measured rules; 'xla' is lax.conv_general_dilated).

    Parameters ('params' collection):
      kernel: (*kernel_size, C // feature_group_count, features), i.e.
        (kh, kw, C/groups, O) for 2-D, (k, C/groups, O) for 1-D; C is the
        inputs' last axis.
      bias: (features,), when use_bias.

    Call with inputs channels-last: (*batch, H, W, C) for a 2-D kernel_size,
    (*batch, L, C) for a 1-D one, with any number of batch axes (none included);
    the output is (*batch, mh, mw, O) or (*batch, mL, O). Padding is Flax's (see
    jconv.nnx.Conv).

    input_dilation runs as conv2d's (explicit padding, as in Flax). A
    conv_general_dilated (or conv_general_dilated_cls's instance) that is lax's
    or ``functools.partial(jax.lax.conv_general_dilated, preferred_element_type=...)``
    runs jconv.conv2d with that preferred_element_type (the partial's precision
    is overridden by the module's, as in Flax's call); any other callable is
    called as Flax calls it, bypassing jconv's lowerings.

    Raises NotImplementedError at construction for a kernel_size of length
    other than 1 or 2 (3-D convolutions). Other errors are
    Flax's, of the same type and at the same moment, except that inputs whose
    channels feature_group_count does not divide raise ValueError (Flax asserts)
    and that bools where ints are asked for are refused (Flax takes True as 1).

    >>> import jax, jconv
    >>> conv = jconv.linen.Conv(features=6, kernel_size=3, padding="CAUSAL")   # 1-D
    >>> x = jax.random.normal(jax.random.key(1), (5, 10, 4))                  # N, L, C
    >>> y, variables = conv.init_with_output(jax.random.key(0), x)
    >>> y.shape, variables["params"]["kernel"].shape
    ((5, 10, 6), (3, 4, 6))
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] | None = 1
    padding: PaddingLike = "SAME"
    input_dilation: int | Sequence[int] | None = 1
    kernel_dilation: int | Sequence[int] | None = 1
    feature_group_count: int = 1
    use_bias: bool = True
    mask: Array | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: PrecisionLike = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = default_bias_init
    promote_dtype: PromoteDtype = promote_dtype
    conv_general_dilated: Any = None  # Flax's override: see the class docstring
    conv_general_dilated_cls: Any = None  # likewise, a class whose instance is called
    method: str = "auto"

    def __post_init__(self) -> None:
        check_supported(
            canonical_kernel_size(self.kernel_size), self.method, input_dilation=self.input_dilation
        )
        super().__post_init__()

    @property
    def shared_weights(self) -> bool:
        """One kernel for every output pixel (a regular convolution), as in flax.linen.Conv."""
        return True

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """Convolve channels-last inputs: (*batch, H, W, C) -> (*batch, mh, mw, O) (1-D: L, mL)."""
        kernel_size = canonical_kernel_size(self.kernel_size)
        padding = canonical_padding(self.padding, kernel_size)
        shape = kernel_shape(
            kernel_size,
            inputs.shape[-1],
            self.features,
            self.feature_group_count,
            inputs_shape=inputs.shape,
        )
        check_mask(self.mask, shape)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        kernel = apply_mask(kernel, self.mask)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        args: dict[str, Any] = dict(
            padding=padding,
            strides=self.strides,
            input_dilation=self.input_dilation,
            kernel_dilation=self.kernel_dilation,
            feature_group_count=self.feature_group_count,
            precision=self.precision,
        )
        fn = self.conv_general_dilated
        if self.conv_general_dilated_cls is not None:
            fn = self.conv_general_dilated_cls()
        keywords = lax_partial_keywords(fn)
        if keywords is None:  # a custom function, called as Flax calls it
            return custom_flax_conv(fn, inputs, kernel, bias, **args)
        return flax_conv(
            inputs,
            kernel,
            bias,
            preferred_element_type=keywords.get("preferred_element_type"),
            method=self.method,
            **args,
        )


class ConvTranspose(nn.Module):
    """A transposed convolution with Flax Linen parameters, calling jconv.conv2d.

    Same attributes, order and defaults as ``flax.linen.ConvTranspose``
    (lax.conv_transpose's semantics), plus ``method`` (see jconv.nnx.ConvTranspose).

    Parameters ('params' collection):
      kernel: (*kernel_size, C, features), or with transpose_kernel
        (*kernel_size, features, C); C is the inputs' last axis.
      bias: (features,), when use_bias.

    >>> import jax, jconv
    >>> up = jconv.linen.ConvTranspose(features=8, kernel_size=(4, 4), strides=(2, 2))
    >>> x = jax.random.normal(jax.random.key(1), (4, 8, 8, 16))
    >>> y, variables = up.init_with_output(jax.random.key(0), x)
    >>> y.shape, variables["params"]["kernel"].shape
    ((4, 16, 16, 8), (4, 4, 16, 8))
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: Sequence[int] | None = None
    padding: PaddingLike = "SAME"
    kernel_dilation: Sequence[int] | None = None
    use_bias: bool = True
    mask: Array | None = None
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    precision: PrecisionLike = None
    kernel_init: Initializer = default_kernel_init
    bias_init: Initializer = default_bias_init
    transpose_kernel: bool = False
    promote_dtype: PromoteDtype = promote_dtype
    preferred_element_type: Dtype | None = None
    method: str = "auto"

    def __post_init__(self) -> None:
        check_supported(canonical_kernel_size(self.kernel_size), self.method)
        super().__post_init__()

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        """(*batch, H, W, C) -> (*batch, Ho, Wo, features) (1-D: L, Lo)."""
        kernel_size = canonical_kernel_size(self.kernel_size)
        c = inputs.shape[-1]
        channels = (self.features, c) if self.transpose_kernel else (c, self.features)
        shape = (*kernel_size, *channels)
        check_mask(self.mask, shape)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        kernel = apply_mask(kernel, self.mask)
        padding = canonical_transpose_padding(self.padding, kernel_size)
        bias = None
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        inputs, kernel, bias = self.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        return flax_conv_transpose(
            inputs,
            kernel,
            bias,
            padding=padding,
            strides=self.strides,
            kernel_dilation=self.kernel_dilation,
            transpose_kernel=self.transpose_kernel,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
            method=self.method,
        )
