"""Depthwise convolution (one input channel per group) as elementwise multiply-adds.

With one input channel per group there is nothing to contract: each tap's share
of y is the tap's window of x times the tap's weight, channel by channel (times
each of the group's outputs, for a channel multiplier above 1). 'taps' runs
depthwise problems here, and so does 'auto' on a CPU. The forward pass also takes
a few input channels per group (`elementwise_y`): each tap's share is then a sum
of C/groups such products, which 'auto' runs on 2 or 3 input channels
(jconv/_auto.py), where a GEMM contracting 2 or 3 values would waste its width.

The three members of the bilinear family (jconv/_lowering.py):

- y: kh*kw windows, each times its weights, summed; XLA fuses them into one pass;
- dx: JAX's transpose of y, each tap's dy * w put back where its window came
  from: it forms exactly the products of the definition (zero-padding dy and
  correlating with the flipped kernel would form 0 * w at the border, NaN for an
  infinite weight);
- dw: per tap, the sum over the batch and the pixels of the window times dy, as
  a scan over blocks of dy's rows and samples, every tap's products of a block
  added into its own accumulator, one row of dy's shape. Written as kh*kw
  reductions side by side (JAX's transpose of y), XLA's CPU backend materializes
  every window at once: kh*kw copies of the input as temporaries, which glibc
  maps afresh and the kernel zero-fills on every call once they pass its mmap
  threshold (32 MiB); on the bench's depthwise layer that took 25 to 30 ms of a
  50 ms gradient (BENCHMARKS.md). A scan over the taps, one window at a time,
  read x and dy from memory once per tap; the scan over blocks reads them once.

No value is mixed before it is multiplied, so no result needs the finiteness
check of 'banded' and 'winograd' (jconv/_finite_guard.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jconv._checks import ConvSpec
from jconv._conv_primitive import lowered_conv
from jconv._layouts import LAYOUT_INFO, batch_mesh_axis
from jconv._lowering import Lowering, transpose_in_x
from jconv._padding import pad_input, zero_pad_or_crop
from jconv._rounding import round_to
from jconv._typing import Array
from jconv._windows import spread_widths, tap_window, zero_padded_tap_window


def _split_groups(a: Array, spec: ConvSpec, per_group: int) -> Array:
    """Batched activation (spec.layout) -> its channel axis split into (groups, per_group)."""
    axis = LAYOUT_INFO[spec.layout].channel_axis
    return a.reshape(*a.shape[:axis], spec.groups, per_group, *a.shape[axis + 1 :])


def _weights(w_tap: Array, spec: ConvSpec) -> Array:
    """One tap's weights, (O,) = (groups * og,), shaped against a window split by
    _split_groups in spec.layout: (G, og, 1, 1) for NCHW, (G, og) for NHWC."""
    shape = (spec.groups, spec.og, 1, 1) if spec.layout == "NCHW" else (spec.groups, spec.og)
    return w_tap.reshape(shape)


def _merge_groups(a: Array, spec: ConvSpec) -> Array:
    axis = LAYOUT_INFO[spec.layout].channel_axis
    return a.reshape(*a.shape[:axis], spec.o, *a.shape[axis + 2 :])


def elementwise_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout (zero-padded here); w: (O, C/groups, kh, kw) -> y, spec.layout.

    y = sum over taps (i, j) and a group's input channels c of window(i, j)[c] times
    w[:, c, i, j]: kh * kw * C/groups elementwise multiply-adds per output, no GEMM
    (depthwise: C/groups = 1). The sum of the windows (`_window_sum`), rounded to the
    output dtype by jconv/_rounding.py: XLA's CPU backend fused a bfloat16 convert into
    the sum's loop and ran it 4x slower (LeNet's first layer by 'taps' 8.4 -> 2.0 ms in bfloat16).

    In NCHW at stride 1, on one input channel per group, each tap pads x on its own
    (`zero_padded_tap_window`), which XLA fuses into the sum: 1.75x to 2.05x faster than
    slicing one padded copy of x (0.43 to 0.52 against 0.76 to 0.98 ms on the bench's
    layer), the step with the gradients within the noise (0.93x to 1.0x). In NHWC that
    ran the forward pass 2.7x slower (2.3 against 0.83 ms), and NCHW's input gradient,
    its transpose, gained nothing: both slice one padded x. Strided, it lost in NCHW too:
    stride 2, 64 channels at 112x112, 20.8 against 3.5 ms. With more channels per group
    (each tap's pad then read cg times) one padded copy won in NCHW: 1.24x to 1.77x forward
    on 3 channels (the step within the noise), 1.3x to 3.9x forward and 1.5x to 4.8x with
    the gradient on 4 and 8 channels a group (GROUPED_ELEMENTWISE; session 17).
    """
    per_tap = spec.layout == "NCHW" and spec.stride == (1, 1) and spec.cg == 1
    return round_to(_window_sum(x, w, spec, pad_per_tap=per_tap), spec.out_dtype)


def _window_sum(x: Array, w: Array, spec: ConvSpec, pad_per_tap: bool = False) -> Array:
    """elementwise_y in spec.acc_dtype, linear in x (its transpose is the input gradient).

    The sum ends in a rounding to its own dtype, which changes no value (`_kept_apart`).
    Where y is the sum of the windows straight away, XLA's CPU backend merges that sum
    into a consumer's reduction (a loss's) as a library fusion that takes every window,
    and the weights broadcast to its shape, as materialized copies: 2 * kh*kw copies of
    x as temporaries, the bench's forward-plus-backward 18x slower (BENCHMARKS.md).
    Sessions 7 to 10 kept the sum apart by computing it in the other layout, x
    transposed first and y back. Against that, interleaved in one process on the
    bench's layer (session 11), the step with the loss's value and both gradients ran
    1.04x to 1.18x faster in NHWC and 1.04x to 1.12x in NCHW. Alone, the NHWC forward
    pass was within the machine's noise (0.92x to 1.25x); in NCHW the forward pass ran
    0.88x to 0.94x (before it took a pad per tap, `elementwise_y`) and the input gradient
    0.86x to 0.95x of the transposed form's.
    """
    acc = spec.acc_dtype
    x, w = x.astype(acc), w.astype(acc)
    if pad_per_tap:  # each tap's window its own pad of x (see elementwise_y)
        windows = lambda i, j: zero_padded_tap_window(x, spec, i, j)
    else:
        padded = pad_input(x, spec)
        windows = lambda i, j: tap_window(padded, spec, i, j)
    channel = LAYOUT_INFO[spec.layout].channel_axis + 1  # a group's channels, once split
    y = None
    for i in range(spec.kh):
        for j in range(spec.kw):
            window = _split_groups(windows(i, j), spec, spec.cg)
            for c in range(spec.cg):  # depthwise: cg = 1, the window itself
                one = jax.lax.slice_in_dim(window, c, c + 1, axis=channel)
                term = one * _weights(w[:, c, i, j], spec)
                y = term if y is None else y + term
    assert y is not None
    return _kept_apart(_merge_groups(y, spec))


def _kept_apart(y: Array) -> Array:
    """y, rounded to its own dtype's exponent and mantissa: no value changes.

    XLA keeps the rounding in the compiled program, and its CPU backend's library
    fusions do not take it, so a consumer's reduction cannot reach through it into the
    windows' sum (tests/test_depthwise.py checks a loss's temporaries). It is linear,
    so the input gradient, its transpose, rounds dy the same way (no change either).
    An optimization barrier does not do this: XLA's CPU pipeline removes it first.
    """
    info = jnp.finfo(y.dtype)
    return jax.lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)


# One step of the kernel gradient's scan adds a few rows of dy, for a few samples, into
# each tap's accumulator: kh * kw * rows products in all, at most MAX_TERMS (each tap's
# rows are written out as a sum, which XLA fuses with the products into one loop, and
# compile time grows with the count), for samples whose rows hold at most ACC_ELEMENTS.
MAX_TERMS = 72
ACC_ELEMENTS = 1 << 13
# grouped_dw's steps: fewer rows, since it runs a scan per input channel of a group. On
# ResNeXt-like layers 72 compiled with the rest of the step in 1.5 to 1.75 s, 18 in 0.9 to
# 1.1 s, at 0.91x to 1.03x the speed
GROUPED_MAX_TERMS = 18


def _divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of n that is at most limit (1 at least).

    A divisor, so that no step reads past dy: padding dy with zero rows would
    multiply them by x, and 0 * Inf is NaN where the definition has no product.
    """
    return max(d for d in range(1, max(1, min(n, limit)) + 1) if n % d == 0)


def _row_block(mh: int, taps: int, max_terms: int = MAX_TERMS) -> int:
    """Rows of dy one step adds: the most that divide mh, up to max_terms // taps."""
    return _divisor_at_most(mh, max_terms // taps)


def _sample_block(n: int, row_elements: int) -> int:
    """Samples one step takes: the most that divide n whose rows fit ACC_ELEMENTS."""
    return _divisor_at_most(n, ACC_ELEMENTS // max(1, row_elements))


def _depthwise_dw(
    x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any, max_terms: int = MAX_TERMS
) -> Array:
    """x: batched (spec.layout); dy: batched output -> dw: (O, 1, kh, kw).

    A scan over blocks of dy, `_sample_block` samples by `_row_block` rows a step: for
    each tap, the rows' products with the rows of x that the tap meets, summed and
    added into the tap's accumulator, one row of dy for each of the step's samples;
    summed over those samples and the row's pixels once, at the end. Each product is
    one of the definition's, and every step's rows stay in the CPU's caches.

    Each row of x and of dy is its own dynamic slice of the whole array. Sliced from a
    shared block of rows instead, XLA's CPU backend emitted each tap's sum as a loop
    10x slower than one row's product (the bench's depthwise layer, 2 rows a step: 21 ms
    against 2). With a slice per row it ran 1.4x to 1.6x faster than session 10's scan,
    which added each block of dy's shape into accumulators of that shape (NCHW: 1.25x
    to 1.4x; interleaved in one process, BENCHMARKS.md).
    """
    del kernel_sharding  # a sum over the batch: replicated, wherever the batch lies
    acc = spec.acc_dtype
    x = pad_input(x.astype(acc), spec)
    dy = dy.astype(acc)
    # rows split as (..., G, og) for a channel multiplier; left whole for one output per
    # group (a minor axis of size 1 slowed XLA's CPU reductions 3x)
    multiplier = spec.og > 1
    (mh, mw), (sh, sw), (dh, dw) = spec.out_hw, spec.stride, spec.dilation
    ah, aw = LAYOUT_INFO[spec.layout].spatial_axes
    channel = LAYOUT_INFO[spec.layout].channel_axis
    rows = _row_block(mh, spec.kh * spec.kw, max_terms)
    # A batch split over devices in JAX's explicit sharding mode cannot be sliced: there
    # each step takes every sample (each device its own)
    row_elements = dy.size // (spec.n * mh)
    samples = spec.n if batch_mesh_axis(dy) is not None else _sample_block(spec.n, row_elements)
    row_steps = mh // rows
    span = (mw - 1) * sw + 1  # the input columns one tap's window spans
    x_size, dy_size = list(x.shape), list(dy.shape)
    x_size[0], x_size[ah], x_size[aw] = samples, 1, span
    dy_size[0], dy_size[ah] = samples, 1
    taps = [(i * dh, j * dw) for i in range(spec.kh) for j in range(spec.kw)]

    def row_of(a: Array, size: list[int], first: Array, row: Array, column: int = 0) -> Array:
        """One row of a (x or dy) for the step's samples, `size` long from `column` on."""
        start = [jnp.zeros((), row.dtype)] * 4
        start[0], start[ah], start[aw] = first, row, jnp.asarray(column, row.dtype)
        return jax.lax.dynamic_slice(a, start, size)

    def x_row(first: Array, row: Array, column: int) -> Array:
        """A tap's window row: x's row from `column` on, every sw-th column."""
        r = row_of(x, x_size, first, row, column)
        if sw > 1:
            strides = [1] * 4
            strides[aw] = sw
            r = jax.lax.slice(r, [0] * 4, r.shape, strides)
        return _split_groups(r, spec, 1) if multiplier else r

    def dy_row(first: Array, row: Array) -> Array:
        r = row_of(dy, dy_size, first, row)
        return _split_groups(r, spec, spec.og) if multiplier else r

    def step(sums: tuple[Array, ...], block: tuple[Array, Array]) -> tuple[tuple[Array, ...], None]:
        first, top = block
        out = []
        for s, (i, j) in zip(sums, taps):
            for q in range(rows):
                s = s + x_row(first, (top + q) * sh + i, j) * dy_row(first, top + q)
            out.append(s)
        return tuple(out), None

    # zeros shaped as one step's rows of dy, and laid out as they are (a batch on devices)
    zero = jnp.zeros_like(jax.lax.slice(dy, [0] * 4, dy_size))
    zero = _split_groups(zero, spec, spec.og) if multiplier else zero
    # Each step's first sample and first row, as the scan's inputs: computed inside the
    # step, a division by a row count that is not a power of two made XLA pass the zero
    # start indices into each tap's loop as run-time values, which ran it 1.7x slower
    firsts, tops = np.divmod(np.arange((spec.n // samples) * row_steps), row_steps)
    blocks = (jnp.asarray(firsts * samples, np.int32), jnp.asarray(tops * rows, np.int32))
    sums, _ = jax.lax.scan(step, (zero,) * len(taps), blocks)
    kept = (channel, channel + 1) if multiplier else (channel,)
    summed = tuple(a for a in range(zero.ndim) if a not in kept)
    per_tap = jnp.stack([s.sum(summed) for s in sums])  # (kh*kw, G, og) or (kh*kw, O)
    dw_taps = per_tap.reshape(spec.kh, spec.kw, spec.o)
    return dw_taps.transpose(2, 0, 1)[:, None].astype(spec.dtype)


def grouped_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """x: batched (spec.layout), C/groups channels per group; dy: batched output -> dw:
    (O, C/groups, kh, kw), by `_depthwise_dw`'s scan, one input channel of every group at a
    time: channel c of each group is a depthwise input with O/groups outputs a channel.

    The C/groups scans run as one `lax.map` over the channel, so that XLA compiles the scan
    once (written out one after the other, ResNeXt's 8 channels a group compiled in 3.7 s
    against 1.1), with GROUPED_MAX_TERMS products a step. Each product is one of the
    definition's; against 'taps''s GEMM per tap, which copies each tap's window of x for its
    product (ResNeXt's layer: nine 3 MiB copies, page faults on every call), 2x to 10x
    faster where those copies come to 6.9 MiB or more, a tie at 5.2 (BENCHMARKS.md, session
    17)."""
    channel = LAYOUT_INFO[spec.layout].channel_axis
    per_channel = jnp.moveaxis(_split_groups(x, spec, spec.cg), channel + 1, 0)
    one = dataclasses.replace(spec, c=spec.groups)  # one input channel a group
    dws = jax.lax.map(
        lambda xc: _depthwise_dw(xc, dy, one, kernel_sharding, GROUPED_MAX_TERMS), per_channel
    )
    return jnp.moveaxis(dws[:, :, 0], 0, 1)  # (C/groups, O, kh, kw) -> (O, C/groups, kh, kw)


def _depthwise_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dy: batched output (spec.layout); w: (O, 1, kh, kw) -> dx, batched, spec.layout.

    With one output per group, JAX's transpose of y (each tap's dy * w put back where its
    window came from), which XLA fuses into one pass. With a channel multiplier, that
    transpose also sums each tap's products over the group's outputs, and XLA's CPU
    backend merged the kh * kw products and their sums into one library fusion that
    materialized every one of them: 250 to 450 ms for LeNet's first layer (1 -> 6
    channels, 5x5) run by 'taps'. Here the sums over the group's outputs come first, for
    every tap at once, as one contraction, z[tap] = sum_k dy[..., g, k] * w[g, k, tap];
    each tap's z is then put back where its window came from, spread by the stride
    (zeros added, none multiplied: every product is one of the definition's). On that
    layer 2.6 ms (BENCHMARKS.md, session 8).
    """
    acc = spec.acc_dtype
    if spec.og == 1:  # transposed in acc, then rounded as y is
        wide = dataclasses.replace(spec, dtype=acc)
        return round_to(transpose_in_x(_window_sum, dy.astype(acc), w, wide), spec.dtype)
    taps = w.astype(acc).reshape(spec.groups, spec.og, spec.kh * spec.kw)
    grouped = _split_groups(dy.astype(acc), spec, spec.og)
    subscripts = "nhwgk,gkt->tnhwg" if spec.layout == "NHWC" else "ngkhw,gkt->tnghw"
    z = jnp.einsum(subscripts, grouped, taps, precision=spec.precision)
    ah, aw = LAYOUT_INFO[spec.layout].spatial_axes
    (mh, mw), (sh, sw), (dh, dw) = spec.out_hw, spec.stride, spec.dilation
    hp, wp = spec.padded_hw
    zero = jnp.zeros((), acc)
    dx = None
    for t in range(spec.kh * spec.kw):
        i, j = divmod(t, spec.kw)
        widths = [(0, 0, 0)] * 4
        widths[ah] = spread_widths(hp, mh, sh, dh, i)
        widths[aw] = spread_widths(wp, mw, sw, dw, j)
        spread = jax.lax.pad(z[t], zero, widths)
        dx = spread if dx is None else dx + spread
    assert dx is not None
    crop = [(0, 0)] * 4  # the padding's transpose: its rows and columns cut off again
    crop[ah], crop[aw] = ((-lo, -hi) for lo, hi in spec.pads)
    return round_to(zero_pad_or_crop(dx, crop), spec.dtype)


DEPTHWISE = Lowering("taps", elementwise_y, _depthwise_dx, _depthwise_dw, guarded=frozenset())


def conv_depthwise(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout, one input channel per group; w: (O, 1, kh, kw) -> y."""
    return lowered_conv(x, w, spec, DEPTHWISE)
