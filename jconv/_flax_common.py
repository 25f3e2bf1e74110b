"""What jconv.nnx.Conv and jconv.linen.Conv share: Flax's Conv semantics as pure functions.

Flax's Conv takes channels-last inputs with any number of leading batch axes,
a kernel (*kernel_size, in_features // groups, out_features) and a padding in
one of Flax's forms; it calls lax.conv_general_dilated. These functions turn
the same arguments into one call of jconv.conv2d(..., layout='NHWC'), so that
the modules stay thin parameter holders:

- `canonical_kernel_size`, `check_supported`: at construction, what jconv can
  run (1-D and 2-D convolutions, no input dilation, no custom lax function).
- `canonical_padding`: Flax's padding forms and its errors, before any
  parameter is read.
- `flax_conv`: the convolution itself, for a kernel already masked and promoted.

Flax's errors are kept, type and moment: what Flax (or lax under it) refuses
at call time, these refuse at call time with the same exception type.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jconv._conv2d import check_method, conv2d
from jconv._padding import zero_pad_or_crop
from jconv._typing import Array, DTypeLike

FlaxPadding = str | int | Sequence[int | tuple[int, int]]  # what Flax's Conv accepts
CanonicalPadding = str | list[tuple[int, int]]  # a string, or (low, high) per spatial axis
IntsLike = int | Sequence[int] | None  # Flax's strides and dilations: None means 1

SUPPORTED_RANKS = (1, 2)
LAX_PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER")  # the strings Flax hands on to lax
BORDER_MODES = {"CIRCULAR": "wrap", "REFLECT": "reflect"}  # Flax's own strings, as jnp.pad modes


def canonical_kernel_size(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    """An int is a 1-D kernel size; anything else is made a tuple (TypeError if it cannot be)."""
    if isinstance(kernel_size, int):
        return (kernel_size,)
    return tuple(kernel_size)


def broadcast_ints(name: str, value: IntsLike, rank: int) -> tuple[int, ...]:
    """Flax's strides and dilations: None is 1, an int is repeated, a sequence is taken as is."""
    if value is None:
        value = 1
    if isinstance(value, int):
        return (value,) * rank
    values = tuple(value)
    if len(values) != rank:
        raise ValueError(
            f"{name} must be an int or a sequence of {rank} ints (one per spatial axis of a "
            f"{rank}-D convolution), got {value!r}"
        )
    return values


def check_supported(
    kernel_size: tuple[int, ...],
    input_dilation: IntsLike,
    method: str,
    custom_conv: Any = None,
) -> None:
    """Refuse, at construction, the Flax arguments that jconv.conv2d cannot run.

    custom_conv: a conv_general_dilated (or _cls) override that Flax would call
    instead of lax's; jconv.conv2d is the whole point of these modules.
    """
    check_method(method)
    if len(kernel_size) not in SUPPORTED_RANKS:
        raise NotImplementedError(
            f"jconv runs 1-D and 2-D convolutions only (kernel_size of length 1 or 2); got "
            f"kernel_size={kernel_size!r}, a {len(kernel_size)}-D convolution. Use Flax's own "
            "Conv for it."
        )
    if input_dilation is not None and (
        isinstance(input_dilation, int) or not isinstance(input_dilation, Sequence)
    ):
        input_dilation = (input_dilation,)
    if input_dilation is not None and any(d != 1 for d in input_dilation):
        raise NotImplementedError(
            f"input_dilation={input_dilation!r}: jconv.conv2d has no input (lhs) dilation, "
            "only kernel dilation. Use Flax's own Conv or ConvTranspose for it."
        )
    if custom_conv is not None:
        raise NotImplementedError(
            "jconv's Conv always calls jconv.conv2d, so it cannot take a conv_general_dilated "
            "override; use Flax's own Conv for a custom convolution function."
        )


def canonical_padding(padding: FlaxPadding, kernel_size: tuple[int, ...]) -> CanonicalPadding:
    """Flax's padding forms: a string, an int for every side, or one int or (low, high) per axis.

    Raises as Flax does: ValueError for a malformed padding or for 'CAUSAL' on
    more than one spatial axis, RuntimeError (lax's) for an unknown string.
    """
    rank = len(kernel_size)
    if isinstance(padding, str):
        if padding == "CAUSAL" and rank != 1:
            raise ValueError("Causal padding is only implemented for 1D convolutions.")
        if padding not in (*BORDER_MODES, "CAUSAL") and padding.upper() not in (
            LAX_PADDING_STRINGS
        ):
            raise RuntimeError(
                f"Unrecognized padding type: expected 'VALID', 'SAME', 'SAME_LOWER' (any case), "
                f"or 'CIRCULAR', 'REFLECT', 'CAUSAL' (upper case), got {padding!r}."
            )
        return padding
    if isinstance(padding, int):
        return [(padding, padding)] * rank
    if isinstance(padding, Sequence) and len(padding) == rank:
        pads = []
        for p in padding:
            if isinstance(p, int):
                pads.append((p, p))
            elif isinstance(p, tuple) and len(p) == 2:
                pads.append(p)
            else:
                break
        else:
            bad = [p for pair in pads for p in pair if not _is_int(p)]
            if bad:
                raise ValueError(f"padding amounts must be ints, got {padding!r}")
            return [(operator.index(lo), operator.index(hi)) for lo, hi in pads]
    raise ValueError(
        f"Invalid padding format: {padding}, should be str, int, or a sequence of len {rank} "
        "where each element is an int or pair of ints."
    )


def _is_int(v: Any) -> bool:
    try:
        operator.index(v)
    except TypeError:
        return False
    return True


def _border(
    x: Array, padding: CanonicalPadding, window: tuple[int, ...]
) -> tuple[Array, str | list[tuple[int, int]]]:
    """Fill Flax's own borders (CIRCULAR, REFLECT, CAUSAL) and crop negative pads.

    x: (N, *spatial, C). Returns x and the padding left for conv2d: a lax string
    or non-negative (low, high) pairs. CIRCULAR and REFLECT pad
    ((w - 1) // 2, w // 2) for the dilated window w of each axis, whatever the
    stride, as Flax does, with jnp.pad (which wraps or reflects more than once
    if it must).
    """
    rank = len(window)
    if isinstance(padding, str):
        if padding in BORDER_MODES:
            widths = [(0, 0), *(((w - 1) // 2, w // 2) for w in window), (0, 0)]
            return jnp.pad(x, widths, mode=BORDER_MODES[padding]), [(0, 0)] * rank
        if padding == "CAUSAL":
            return x, [(window[0] - 1, 0)]
        if padding.upper() == "VALID":
            return x, [(0, 0)] * rank
        return x, padding.upper()
    if any(min(p) < 0 for p in padding):  # lax crops where a pad is negative; so does lax.pad
        x = zero_pad_or_crop(x, [(0, 0), *((min(lo, 0), min(hi, 0)) for lo, hi in padding), (0, 0)])
    return x, [(max(lo, 0), max(hi, 0)) for lo, hi in padding]


def _check_preferred(dtype: Any, preferred_element_type: DTypeLike | None) -> None:
    """lax refuses a preferred_element_type narrower than the inputs; so does Flax's Conv."""
    if preferred_element_type is None:
        return
    pet = np.dtype(preferred_element_type)
    if jnp.issubdtype(pet, jnp.floating) and jnp.promote_types(dtype, pet) != pet:
        raise TypeError(
            f"preferred_element_type={pet} must not be narrower than the inputs' dtype {dtype}"
        )


def flax_conv(
    inputs: Array,
    kernel: Array,
    bias: Array | None,
    *,
    padding: CanonicalPadding,
    strides: IntsLike = 1,
    kernel_dilation: IntsLike = 1,
    feature_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: DTypeLike | None = None,
    method: str = "auto",
    out_sharding: Any = None,
) -> Array:
    """Flax's Conv applied with jconv.conv2d, for a 1-D or 2-D kernel.

    Args:
      inputs: (*batch, L, C) for a 1-D kernel, (*batch, H, W, C) for a 2-D one;
        any number of batch axes, none included.
      kernel: (k, C // groups, O) or (kh, kw, C // groups, O), already masked and
        in the dtype to compute in (Flax's promote_dtype is the module's job).
      bias: (O,) or None.
      padding: from `canonical_padding`.
      strides, kernel_dilation: None, an int, or one int per spatial axis.
      out_sharding: nnx.Conv's explicit-sharding argument: the sharding (a
        PartitionSpec under jax.set_mesh, or a NamedSharding) of the result with
        its batch axes flattened into one, (N, *spatial, O); jconv reshards the
        result to it.

    Returns:
      (*batch, mL, O) or (*batch, mh, mw, O): lax.conv_general_dilated's result
      for the same arguments, plus bias.
    """
    rank = kernel.ndim - 2
    n_batch = inputs.ndim - (rank + 1)
    if n_batch < 0:
        spatial = "L" if rank == 1 else "H, W"
        raise ValueError(
            f"a {rank}-D convolution takes inputs of shape (*batch, {spatial}, features); got "
            f"shape {inputs.shape}"
        )
    batch_shape = inputs.shape[:n_batch]
    x = inputs.reshape((math.prod(batch_shape), *inputs.shape[n_batch:]))
    strides = broadcast_ints("strides", strides, rank)
    dilation = broadcast_ints("kernel_dilation", kernel_dilation, rank)
    if min(dilation) < 1:
        raise TypeError(f"All dilations must be positive, got kernel_dilation={dilation}")
    window = tuple((k - 1) * d + 1 for k, d in zip(kernel.shape[:rank], dilation, strict=True))
    x, pads = _border(x, padding, window)
    _check_preferred(jnp.result_type(x, kernel), preferred_element_type)
    if rank == 1:  # a 1-D convolution is a 2-D one over a unit height
        x, kernel = x[:, None], kernel[None]
        strides, dilation, window = (1, *strides), (1, *dilation), (1, *window)
        if not isinstance(pads, str):
            pads = [(0, 0), *pads]
    # conv2d adds the bias in the output's dtype; when Flax's `y + bias` would widen, add it here.
    out_dtype = preferred_element_type or jnp.result_type(x, kernel)
    fuse_bias = bias is None or jnp.result_type(out_dtype, bias) == np.dtype(out_dtype)
    if isinstance(pads, str) or all(
        lo + size + hi >= w for (lo, hi), size, w in zip(pads, x.shape[1:-1], window, strict=True)
    ):
        y = conv2d(
            x,
            kernel,
            bias if fuse_bias else None,
            stride=strides,
            padding=pads if isinstance(pads, str) else tuple(pads),
            dilation=dilation,
            groups=feature_group_count,
            layout="NHWC",
            precision=precision,
            preferred_element_type=preferred_element_type,
            method=method,
        )
    else:  # the window is wider than the padded input: lax returns an empty output, and so do we
        out_hw = [
            0 if lo + size + hi < w else (lo + size + hi - w) // s + 1
            for (lo, hi), size, w, s in zip(pads, x.shape[1:-1], window, strides, strict=True)
        ]
        y = jnp.zeros((x.shape[0], *out_hw, kernel.shape[-1]), out_dtype)
    if rank == 1:
        y = y[:, 0]
    if out_sharding is not None:  # what lax's out_sharding asks of the (N, *spatial, O) result
        y = jax.sharding.reshard(y, out_sharding)
    if not fuse_bias:
        y = y + bias
    return y.reshape((*batch_shape, *y.shape[1:]))
