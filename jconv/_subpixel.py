"""Input (lhs) dilation and crops, above the lowerings: the sub-pixel formulation.

lax's ``lhs_dilation`` puts ``d - 1`` zeros between neighbouring pixels of x
before the correlation; a transposed convolution (torch's ConvTranspose2d,
lax.conv_transpose) is exactly that, with the stride as the input dilation.
Correlating the dilated input directly would spend most multiply-adds on the
inserted zeros (3/4 of them for a 2x upsampling), so no lowering does it.

Why phases: along one axis, with input dilation D, output stride S, kernel
size k and kernel dilation Kd, output m reads dilated position ``m S + i Kd``
for tap i, a pixel of x exactly when ``m S + i Kd - lo`` is a multiple of D.
Whether it is depends on m only through ``m S mod D``, which repeats with
period ``P = D / gcd(S, D)``. So the outputs split into P phases,
``m = r + P t``, and within phase r:

- the same taps land on pixels for every t: ``i = i0, i0 + Q, ...`` with
  ``Q = D / gcd(Kd, D)``; the others always land on inserted zeros and are
  left out;
- consecutive outputs t move ``S' = S / gcd(S, D)`` pixels of x, and
  consecutive kept taps ``d' = Kd / gcd(Kd, D)`` pixels.

Each phase is then an ordinary correlation of the undilated x (cropped or
zero-padded at its ends) with the sub-kernel of its taps, stride S' and
kernel dilation d': a plain conv2d problem, run by whichever lowering was
asked for, or by 'auto''s rule for that phase. The phases' outputs are
interleaved back (a stack and a reshape). Per output it does exactly the
multiply-adds that land on real pixels or on the padding, none on the inserted
zeros; a phase whose taps all land on zeros is zeros, in the output's dtype.
Being pads, slices, plain convolutions and a reshape, it keeps every
transformation the chosen lowering supports (jit, grad, jvp, vmap,
linear_transpose, remat, shard_map).

Negative padding (a crop, as lax allows, and as a transposed convolution's
padding needs when it exceeds ``Kd (k - 1)``) falls out of the same plan: a
phase's x is cropped where its start or end lies inside x. Without input
dilation there is one phase, the whole kernel, and only the crop.

NaN and Inf in x reach the outputs that lax's reach: those whose window
holds that pixel under a kept tap. A phase that reads no pixel of x is zero,
whatever x holds, as in lax. (A non-finite kernel weight is another matter:
lax's CPU convolution multiplies it by neither inserted zeros nor padding when
x is dilated; the lowerings do multiply it by the padding.)
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp

from jconv._checks import ConvSpec
from jconv._layouts import LAYOUT_INFO, batch_mesh_axis
from jconv._lowering import Forward
from jconv._padding import zero_pad_or_crop
from jconv._typing import Array, DTypeLike


@dataclasses.dataclass(frozen=True)
class AxisPhase:
    """One phase along one axis: outputs offset, offset + period, ... of the convolution."""

    offset: int  # r: its first output
    count: int  # T: how many outputs it has (at least 1)
    first_tap: int  # i0: its first tap that lands on a pixel of x
    tap_step: int  # Q: the kept taps are i0, i0 + Q, ...
    taps: int  # J: how many (0: every tap lands on an inserted zero)
    stride: int  # S': pixels of x between consecutive outputs
    dilation: int  # d': pixels of x between consecutive kept taps
    pads: tuple[int, int]  # (low, high) on x for this phase; negative crops
    reads_x: bool  # whether its kept taps reach a pixel of x at all (else it is zeros)


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    period: int  # P: phases along this axis
    out_size: int  # M: outputs along this axis
    phases: tuple[AxisPhase, ...]  # those with an output (offset < out_size), by offset


def plan_axis(
    size: int, input_dilation: int, pads: tuple[int, int], k: int, dilation: int, stride: int
) -> AxisPlan:
    """The phases of one axis: x of `size` pixels, dilated, padded (lo, hi) (negative: crop),
    correlated with a k-tap kernel of this dilation at this stride (module docstring)."""
    lo, hi = pads
    d = input_dilation
    out = ((size - 1) * d + 1 + lo + hi - (k - 1) * dilation - 1) // stride + 1
    period = d // math.gcd(stride, d)
    sub_stride = stride // math.gcd(stride, d)
    tap_step = d // math.gcd(dilation, d)
    sub_dilation = dilation // math.gcd(dilation, d)
    phases = []
    for r in range(min(period, out)):
        count = (out - r + period - 1) // period
        kept = [i for i in range(k) if (r * stride + i * dilation - lo) % d == 0]
        if not kept:
            phases.append(
                AxisPhase(r, count, 0, tap_step, 0, sub_stride, sub_dilation, (0, 0), False)
            )
            continue
        i0 = kept[0]
        start = (r * stride + i0 * dilation - lo) // d  # the pixel of x that tap i0 of t=0 reads
        length = (count - 1) * sub_stride + (len(kept) - 1) * sub_dilation + 1
        phase_pads = (-start, start + length - size)
        # The span of x it reads, [start, start + length), may lie wholly in the padding.
        reads_x = start < size and start + length > 0
        phases.append(
            AxisPhase(
                r, count, i0, tap_step, len(kept), sub_stride, sub_dilation, phase_pads, reads_x
            )
        )
    return AxisPlan(period, out, tuple(phases))


def plan(spec: ConvSpec) -> tuple[AxisPlan, AxisPlan]:
    """The (height, width) phase plans of a spec."""
    h, w = (
        plan_axis(size, d, pads, k, kd, s)
        for size, d, pads, k, kd, s in zip(
            (spec.height, spec.width),
            spec.input_dilation,
            spec.pads,
            (spec.kh, spec.kw),
            spec.dilation,
            spec.stride,
            strict=True,
        )
    )
    return h, w


def phase_spec(spec: ConvSpec, ph: AxisPhase, pw: AxisPhase) -> ConvSpec:
    """The plain problem of one phase: x cropped where its pads are negative, the sub-kernel."""
    (lo_h, hi_h), (lo_w, hi_w) = ph.pads, pw.pads
    return dataclasses.replace(
        spec,
        height=spec.height + min(lo_h, 0) + min(hi_h, 0),
        width=spec.width + min(lo_w, 0) + min(hi_w, 0),
        kh=ph.taps,
        kw=pw.taps,
        stride=(ph.stride, pw.stride),
        dilation=(ph.dilation, pw.dilation),
        pads=((max(lo_h, 0), max(hi_h, 0)), (max(lo_w, 0), max(hi_w, 0))),
        input_dilation=(1, 1),
    )


def multiply_adds(spec: ConvSpec) -> int:
    """Multiply-adds the sub-pixel formulation does: per output, its phase's kept taps."""
    ph_plan, pw_plan = plan(spec)
    per_channel = sum(
        ph.count * pw.count * ph.taps * pw.taps
        for ph, pw in itertools.product(ph_plan.phases, pw_plan.phases)
        if ph.reads_x and pw.reads_x
    )
    return spec.n * spec.o * spec.cg * per_channel


def crop_undilated(x: Array, spec: ConvSpec) -> tuple[Array, ConvSpec]:
    """x cropped where the spec's padding is negative on an axis without input dilation.

    For lax itself ('xla'): XLA's CPU convolution (jax 0.10.2) returns wrong
    values, uninitialized memory included, for an axis padded negatively at one
    end and positively at the other without lhs_dilation. Axes with input
    dilation keep their crops, which it computes correctly.
    """
    crop = [(0, 0)] * 4
    pads = list(spec.pads)
    sizes = [spec.height, spec.width]
    for i, (axis, (lo, hi), d) in enumerate(
        zip(LAYOUT_INFO[spec.layout].spatial_axes, spec.pads, spec.input_dilation)
    ):
        if d == 1 and min(lo, hi) < 0:
            crop[axis] = (min(lo, 0), min(hi, 0))
            pads[i] = (max(lo, 0), max(hi, 0))
            sizes[i] += min(lo, 0) + min(hi, 0)
    if crop == [(0, 0)] * 4:
        return x, spec
    cropped = dataclasses.replace(spec, height=sizes[0], width=sizes[1], pads=(pads[0], pads[1]))
    return zero_pad_or_crop(x, crop), cropped


def conv_subpixel(x: Array, w: Array, spec: ConvSpec, lower: Forward) -> Array:
    """conv2d of a spec with input dilation or crops, each phase run by `lower`.

    x: batched, spec.layout; w: (O, C/groups, kh, kw) -> batched output in
    spec.layout and spec.out_dtype. `lower` gets plain specs only.
    """
    ah, aw = LAYOUT_INFO[spec.layout].spatial_axes
    ph_plan, pw_plan = plan(spec)
    blocks: dict[tuple[int, int], Array] = {}
    for ph, pw in itertools.product(ph_plan.phases, pw_plan.phases):
        if not (ph.reads_x and pw.reads_x):
            continue  # zeros: `_interleave` fills them in
        crop = [(0, 0)] * 4
        crop[ah] = (min(ph.pads[0], 0), min(ph.pads[1], 0))
        crop[aw] = (min(pw.pads[0], 0), min(pw.pads[1], 0))
        xs = x if crop == [(0, 0)] * 4 else zero_pad_or_crop(x, crop)
        ws = w[
            :,
            :,
            ph.first_tap : ph.first_tap + (ph.taps - 1) * ph.tap_step + 1 : ph.tap_step,
            pw.first_tap : pw.first_tap + (pw.taps - 1) * pw.tap_step + 1 : pw.tap_step,
        ]
        blocks[ph.offset, pw.offset] = lower(xs, ws, phase_spec(spec, ph, pw))
    return _interleave(blocks, ph_plan, pw_plan, spec, x)


def _interleave(
    blocks: dict[tuple[int, int], Array],
    ph_plan: AxisPlan,
    pw_plan: AxisPlan,
    spec: ConvSpec,
    x: Array,
) -> Array:
    """Output (r_h + P_h t_h, r_w + P_w t_w) from block (r_h, r_w)'s (t_h, t_w).

    Each block is zero-extended to the longest phase's length, the blocks (and
    zeros for the phases that read no pixel of x) are stacked after their axes
    and reshaped: one copy, no arithmetic. (Spreading each block out by interior
    padding and summing does the same with arithmetic: much slower in bfloat16
    on a CPU, BENCHMARKS.md.)
    """
    ah, aw = LAYOUT_INFO[spec.layout].spatial_axes
    (mh, mw), (p_h, p_w) = (ph_plan.out_size, pw_plan.out_size), (ph_plan.period, pw_plan.period)
    th, tw = -(-mh // p_h), -(-mw // p_w)
    full = [spec.n, spec.o, th, tw] if spec.layout == "NCHW" else [spec.n, th, tw, spec.o]
    if len(blocks) == 1 and (p_h, p_w) == (1, 1):
        return next(iter(blocks.values()))
    rows = []
    for rh in range(p_h):
        cols = []
        for rw in range(p_w):
            block = blocks.get((rh, rw))
            if block is None:  # a phase that reads only zeros, or no output at this offset
                cols.append(_batch_zeros(x, full, spec.out_dtype))
                continue
            widths = [(0, 0)] * 4
            widths[ah], widths[aw] = (0, th - block.shape[ah]), (0, tw - block.shape[aw])
            cols.append(zero_pad_or_crop(block, widths) if widths != [(0, 0)] * 4 else block)
        rows.append(jnp.stack(cols, axis=aw + 1))  # (..., th, ..., tw, P_w, ...)
    y = jnp.stack(rows, axis=ah + 1)  # (..., th, P_h, ..., tw, P_w, ...)
    shape = list(full)
    shape[ah], shape[aw] = th * p_h, tw * p_w
    y = _reshape_keeping_batch(y, shape)
    if (th * p_h, tw * p_w) == (mh, mw):
        return y
    limit = list(shape)
    limit[ah], limit[aw] = mh, mw
    return jax.lax.slice(y, [0] * 4, limit)


def _reshape_keeping_batch(y: Array, shape: list[int]) -> Array:
    """y.reshape(shape), which leaves axis 0 (the batch) alone.

    In JAX's explicit sharding mode a reshape of a batch-sharded array must be
    told where its result goes: the batch stays sharded as it was.
    """
    batch = batch_mesh_axis(y)
    if batch is not None:
        out = jax.sharding.PartitionSpec(batch, *[None] * (len(shape) - 1))
        return jax.lax.reshape(y, shape, out_sharding=out)
    return y.reshape(shape)


def _batch_zeros(like: Array, shape: list[int], dtype: DTypeLike) -> Array:
    """Zeros of shape (N, ...) placed as `like` along its batch axis (axis 0).

    Under shard_map they vary over the same mesh axes as `like`, and in explicit
    sharding mode they are sharded as it is, so that they stack with the other
    phases; jnp.zeros would be neither.
    """
    return jnp.broadcast_to(jnp.zeros_like(like[:, :1, :1, :1], dtype=dtype), shape)
