"""jconv.linen.Conv: a drop-in replacement for flax.linen.Conv that runs jconv.conv2d.

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
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from flax.typing import Dtype, Initializer, PaddingLike, PrecisionLike, PromoteDtypeFn

from jconv._flax_common import (
    apply_mask,
    canonical_kernel_size,
    canonical_padding,
    check_mask,
    check_supported,
    default_bias_init,
    default_kernel_init,
    flax_conv,
    kernel_shape,
)
from jconv._typing import Array

__all__ = ["Conv"]


class Conv(nn.Module):
    """A convolution layer with Flax Linen parameters, calling jconv.conv2d.

    Same attributes, order and defaults as ``flax.linen.Conv`` (see its
    documentation), plus ``method``: which of jconv.METHODS runs the convolution
    ('auto' picks one of jconv's own lowerings; 'xla' is lax.conv_general_dilated).

    Parameters ('params' collection):
      kernel: (*kernel_size, C // feature_group_count, features), i.e.
        (kh, kw, C/groups, O) for 2-D, (k, C/groups, O) for 1-D; C is the
        inputs' last axis.
      bias: (features,), when use_bias.

    Call with inputs channels-last: (*batch, H, W, C) for a 2-D kernel_size,
    (*batch, L, C) for a 1-D one, with any number of batch axes (none included);
    the output is (*batch, mh, mw, O) or (*batch, mL, O). Padding is Flax's (see
    jconv.nnx.Conv).

    Raises NotImplementedError at construction for what jconv.conv2d cannot run:
    a kernel_size of length other than 1 or 2, input_dilation other than 1, a
    conv_general_dilated or conv_general_dilated_cls override. Other errors are
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
    promote_dtype: PromoteDtypeFn = promote_dtype
    conv_general_dilated: Any = None  # Flax's deprecated override: refused
    conv_general_dilated_cls: Any = None  # likewise
    method: str = "auto"

    def __post_init__(self) -> None:
        check_supported(
            canonical_kernel_size(self.kernel_size),
            self.method,
            input_dilation=self.input_dilation,
            conv_overrides=(self.conv_general_dilated, self.conv_general_dilated_cls),
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
        return flax_conv(
            inputs,
            kernel,
            bias,
            padding=padding,
            strides=self.strides,
            kernel_dilation=self.kernel_dilation,
            feature_group_count=self.feature_group_count,
            precision=self.precision,
            preferred_element_type=None,
            method=self.method,
        )
