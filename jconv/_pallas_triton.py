"""The Triton backend of method='pallas': the kernels of its three products and their pallas_calls.

Each product ('y' forward, 'x' input gradient, 'w' kernel gradient) is an
implicit GEMM: a kernel accumulates one (block_m x block_n) tile in float32
(float64 for float64 inputs) registers, one `dot` per step of its contraction,
reading its operands straight from the images with computed row indices:
no patches, no padded copy, no dilated gradient ever sits in memory. Which
pixel a row reads, and whether it lies in the padding, comes from
jconv/_pallas_geometry.py; the tiling from jconv/_pallas_tuning.py.
Depthwise convolutions (one channel in and out per group) have nothing to
contract: their kernels multiply elementwise, with the channels of all groups
as the vector axis, where a GEMM would waste 15/16 of every dot on padding
and read one channel out of every pixel. At stride 1 they may instead roll
down the image (BlockConfig.rows): a strip of rows per program, each input row
loaded once per horizontal tap rather than each pixel once per tap.

The kernel gradient contracts over every output pixel, more work than its few
tiles spread over the SMs: it splits the pixels (split_k), and the splits'
partial sums are added afterwards or, with BlockConfig.serial, in place, one
split after another in a fixed order (a counter per tile), so that no partial
sums are held and every run gives the same bits.

Every load is a gather by integer index arrays, masked, with other=0, and
every masked store is sent past the end of its output: the same kernel is then
exact in interpret mode, where an out-of-range slice would be shifted back
into range rather than masked, and on a GPU, where masked lanes touch no
memory.

``interpret=True`` runs the kernels through Pallas's interpreter (any
platform; slow); otherwise pallas_call lowers them to Triton for CUDA.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from jconv._pallas_geometry import (
    ConvGeometry,
    PixelProblem,
    divmod_nonneg,
    forward_phase,
    image_row,
    kernel_row,
    masked_index,
    phase_input,
    phase_output,
    phase_tap,
    pixel_problems,
    split_contraction,
    split_pixel,
)
from jconv._pallas_tuning import BlockConfig, pixel_config
from jconv._typing import Array


def acc_dtype(*dtypes: Any) -> Any:
    """The accumulator: float32, or float64 when an operand is."""
    return jnp.promote_types(jnp.result_type(*dtypes), jnp.float32)


def _dot(a: Array, b: Array, precision: Any, trans_a: bool = False, trans_b: bool = False):
    dtype = jnp.promote_types(a.dtype, b.dtype)
    return plgpu.dot(
        a.astype(dtype), b.astype(dtype), trans_a=trans_a, trans_b=trans_b, precision=precision
    )


def _load(ref: Any, rows: Array, cols: Array, mask: Array) -> Array:
    """ref[rows, cols] where mask, else 0; rows, cols and mask broadcast to one shape."""
    shape = jnp.broadcast_shapes(rows.shape, cols.shape, mask.shape)
    rows, cols = jnp.broadcast_to(rows, shape), jnp.broadcast_to(cols, shape)
    return plgpu.load(ref.at[rows, cols], mask=jnp.broadcast_to(mask, shape), other=0)


def _store(ref: Any, rows: Array, cols: Array, mask: Array, value: Array) -> None:
    shape = value.shape
    rows = masked_index(jnp.broadcast_to(rows, shape), mask, ref.shape[0])
    plgpu.store(ref.at[rows, jnp.broadcast_to(cols, shape)], value.astype(ref.dtype), mask=mask)


def _wait_turn(count_ref: Any, tile: Array, split: Array) -> None:
    """Spin until the splits before `split` have added their share to this tile.

    count_ref holds one counter per output tile, zero at launch; a split adds one
    when it is done. The split that waits has a later program id than those it
    waits for, so they were launched before it: CUDA starts programs in order of
    their linear id, and a waiting program cannot hold up one that runs already.
    """
    zero = jnp.zeros((), count_ref.dtype)
    seen = plgpu.atomic_add(count_ref, tile, zero)  # an atomic read: acquire, GPU scope
    jax.lax.while_loop(lambda c: c < split, lambda c: plgpu.atomic_add(count_ref, tile, zero), seen)


def _pass_turn(count_ref: Any, tile: Array, interpret: bool) -> None:
    """Hand this tile on to the next split, once every thread's stores are done."""
    if not interpret:  # a barrier of the program's threads; nothing to wait for when interpreted
        plgpu.debug_barrier()
    plgpu.atomic_add(count_ref, tile, jnp.ones((), count_ref.dtype))  # release, GPU scope


def _add_store(ref: Any, rows: Array, cols: Array, mask: Array, value: Array, first: Array) -> None:
    """ref[rows, cols] = value (the first split) or ref[rows, cols] + value (the others).

    The earlier sum is read past the SM's L1 cache (volatile), which may hold a line
    of this tile from an earlier split that ran on the same SM.
    """
    shape = value.shape
    rows_b, cols_b = jnp.broadcast_to(rows, shape), jnp.broadcast_to(cols, shape)
    read = jnp.broadcast_to(mask, shape) & jnp.logical_not(first)
    earlier = plgpu.load(ref.at[rows_b, cols_b], mask=read, other=0, volatile=True)
    _store(ref, rows, cols, mask, value + earlier.astype(value.dtype))


# --- 'y' and the phases of 'x': rows are output pixels ---


def _pixel_kernel(
    a_ref, w_ref, *refs, problem: PixelProblem, config: BlockConfig, precision: Any, has_bias: bool
):
    """One (block_m pixels x block_n channels) tile of one group of a pixel-major product.

    a_ref: the input image, (N * in_h * in_w, groups * k_per_group); w_ref: the
    kernel, (kh * kw * cg, O); optional bias_ref: (O,); out_ref: the output image,
    (N * out_h * out_w, groups * cols_per_group). Any further ref before out_ref
    is the buffer out_ref aliases (earlier phases' rows), never read.
    """
    bias_ref = refs[0] if has_bias else None
    out_ref = refs[-1]
    geo, ph, pw = problem.geometry, problem.phase_h, problem.phase_w
    bm, bn, bk = config.block_m, config.block_n, config.block_k
    kg, cols_g = problem.k_per_group, problem.cols_per_group
    g = pl.program_id(2)
    m = pl.program_id(0) * bm + jnp.arange(bm)
    m_ok = m < problem.rows
    n, a, b = split_pixel(m, ph.count, pw.count)
    cols = pl.program_id(1) * bn + jnp.arange(bn)
    cols_ok = cols < cols_g
    n, a, b, m_ok = n[:, None], a[:, None], b[:, None], m_ok[:, None]

    def step(uh: Array, uw: Array, ch: Array, ch_ok: Array, acc: Array) -> Array:
        """acc + the product of one block of the contraction: taps (uh, uw), channels ch.

        uh, uw: scalars (blocked) or (1, bk) (flat); ch, ch_ok: (1, bk).
        """
        ih, ok_h = phase_input(ph, a, uh)
        iw, ok_w = phase_input(pw, b, uw)
        a_tile = _load(  # (bm, bk)
            a_ref, image_row(n, ih, iw, problem.in_hw), g * kg + ch, m_ok & ok_h & ok_w & ch_ok
        )
        i, j = phase_tap(ph, uh.T), phase_tap(pw, uw.T)
        w_ok = ch_ok.T & cols_ok[None, :]
        if problem.product == "y":  # w[i, j, ch, g * og + col]
            w_tile = _load(w_ref, kernel_row(i, j, ch.T, geo), g * geo.og + cols[None, :], w_ok)
        else:  # contracting output channels: w[i, j, col, g * og + ch]
            w_tile = _load(w_ref, kernel_row(i, j, cols[None, :], geo), g * geo.og + ch.T, w_ok)
        return acc + _dot(a_tile, w_tile, precision)  # (bm, bk) @ (bk, bn)

    acc = jnp.zeros((bm, bn), acc_dtype(a_ref.dtype, w_ref.dtype))
    if problem.taps:
        if config.flat:  # the contraction is (u_h, u_w, channel), flattened
            total = problem.taps * kg

            def body(t, acc):
                k = (t * bk + jnp.arange(bk))[None, :]
                uh, uw, ch = split_contraction(k, pw.taps, kg)
                return step(uh, uw, ch, k < total, acc)

            acc = jax.lax.fori_loop(0, pl.cdiv(total, bk), body, acc)
        else:  # tap by tap, bk channels at a time
            blocks = pl.cdiv(kg, bk)

            def body(t, acc):
                u, c = divmod_nonneg(t, blocks)
                ch = (c * bk + jnp.arange(bk))[None, :]
                return step(*divmod_nonneg(u, pw.taps), ch, ch < kg, acc)

            acc = jax.lax.fori_loop(0, problem.taps * blocks, body, acc)
    if bias_ref is not None:
        bias = plgpu.load(bias_ref.at[g * geo.og + cols], mask=cols_ok, other=0)
        acc = acc + bias.astype(acc.dtype)[None, :]
    rows = image_row(n, phase_output(ph, a), phase_output(pw, b), problem.out_hw)
    _store(out_ref, rows, g * cols_g + cols[None, :], m_ok & cols_ok[None, :], acc)


def _depthwise_pixel_kernel(
    a_ref, w_ref, *refs, problem: PixelProblem, config: BlockConfig, has_bias: bool
):
    """One (block_m pixels x block_n channels) tile of a depthwise product, all groups at once.

    With one input and one output channel per group there is no sum over
    channels: each tap adds the shifted input times the tap's weight, elementwise,
    so the channels are the vector axis (contiguous loads) and no dot is needed.
    With config.flat the taps are unrolled, every tap's load in flight at once,
    rather than a loop of one tap a step. Refs as for _pixel_kernel.
    """
    bias_ref = refs[0] if has_bias else None
    out_ref = refs[-1]
    geo, ph, pw = problem.geometry, problem.phase_h, problem.phase_w
    bm, bn = config.block_m, config.block_n
    m = pl.program_id(0) * bm + jnp.arange(bm)
    n, a, b = (v[:, None] for v in split_pixel(m, ph.count, pw.count))
    m_ok = (m < problem.rows)[:, None]
    channels = pl.program_id(1) * bn + jnp.arange(bn)
    c, c_ok = channels[None, :], (channels < geo.c)[None, :]

    def body(u, acc):
        uh, uw = divmod_nonneg(u, pw.taps)
        ih, ok_h = phase_input(ph, a, uh)
        iw, ok_w = phase_input(pw, b, uw)
        x = _load(a_ref, image_row(n, ih, iw, problem.in_hw), c, m_ok & ok_h & ok_w & c_ok)
        w = _load(w_ref, kernel_row(phase_tap(ph, uh), phase_tap(pw, uw), 0, geo), c, c_ok)
        return acc + x.astype(acc.dtype) * w.astype(acc.dtype)  # (bm, bn) * (1, bn)

    acc = jnp.zeros((bm, bn), acc_dtype(a_ref.dtype, w_ref.dtype))
    if config.flat:
        for u in range(problem.taps):
            acc = body(jnp.int32(u), acc)
    elif problem.taps:
        acc = jax.lax.fori_loop(0, problem.taps, body, acc)
    if bias_ref is not None:
        bias = plgpu.load(bias_ref.at[channels], mask=channels < geo.c, other=0)
        acc = acc + bias.astype(acc.dtype)[None, :]
    rows = image_row(n, phase_output(ph, a), phase_output(pw, b), problem.out_hw)
    _store(out_ref, rows, c, m_ok & c_ok, acc)


def rolls_rows(geometry: ConvGeometry, config: BlockConfig) -> bool:
    """Whether a depthwise product runs a kernel that rolls down the rows
    (_depthwise_rows_kernel, _depthwise_rows_tap_kernel): asked for (config.rows), and
    the geometry allows it (ConvGeometry.rollable)."""
    return bool(config.rows) and geometry.rollable


def _depthwise_rows_kernel(
    a_ref, w_ref, *refs, problem: PixelProblem, config: BlockConfig, has_bias: bool
):
    """config.rows output rows x block_m columns x block_n channels of a depthwise product
    at stride 1, rolling down the input rows.

    out[r, c] = sum_(i, j) a[r + i - top, c + j - left] * k[i, j], one channel at a
    time: for 'y' the kernel and the forward pass's padding; for 'x' (dy correlated
    with the flipped kernel) top = kh - 1 - top and left = kw - 1 - left. Each input
    row is loaded once per horizontal tap, kw times, and added into the kh output rows
    it reaches; a row of output is complete, and stored, once its last input row is in.
    The pixel-block kernel loads every input pixel kh * kw times instead. Refs as for
    _pixel_kernel.
    """
    bias_ref = refs[0] if has_bias else None
    out_ref = refs[-1]
    geo = problem.geometry
    kh, kw = geo.kh, geo.kw
    (src_h, src_w), (out_h, out_w) = problem.in_hw, problem.out_hw
    (top, _), (left, _) = geo.pads
    flip = problem.product == "x"
    if flip:
        top, left = kh - 1 - top, kw - 1 - left
    rows, bm, bn = config.rows, config.block_m, config.block_n
    strips = pl.cdiv(out_h, rows)
    n, strip = divmod_nonneg(pl.program_id(0), strips)
    r0 = strip * rows
    cols = (pl.program_id(1) * bm + jnp.arange(bm))[:, None]
    channels = pl.program_id(2) * bn + jnp.arange(bn)
    c, c_ok = channels[None, :], (channels < geo.c)[None, :]
    acc_t = acc_dtype(a_ref.dtype, w_ref.dtype)

    def weight(i: int, j: int) -> Array:  # (1, bn)
        i, j = (kh - 1 - i, kw - 1 - j) if flip else (i, j)
        return _load(w_ref, jnp.full((1, 1), kernel_row(i, j, 0, geo)), c, c_ok).astype(acc_t)

    weights = [[weight(i, j) for j in range(kw)] for i in range(kh)]
    bias = None
    if bias_ref is not None:
        bias = plgpu.load(bias_ref.at[channels], mask=channels < geo.c, other=0)
        bias = bias.astype(acc_t)[None, :]

    def body(t, pending):
        """Input row r0 + t - top; pending[m] is output row r0 + t - (kh - 1) + m, m < kh - 1."""
        ir = r0 + t - top
        row_ok = (ir >= 0) & (ir < src_h)
        shifted = []
        for j in range(kw):
            ic = cols + j - left
            ok = row_ok & (ic >= 0) & (ic < src_w) & c_ok
            shifted.append(_load(a_ref, image_row(n, ir, ic, (src_h, src_w)), c, ok).astype(acc_t))

        def tap_row(i: int) -> Array:  # what this input row adds to output row r0 + t - i
            total = shifted[0] * weights[i][0]
            for j in range(1, kw):
                total = total + shifted[j] * weights[i][j]
            return total

        done = tap_row(kh - 1) + (pending[0] if kh > 1 else 0)
        if bias is not None:
            done = done + bias
        r = r0 + t - (kh - 1)
        ok = (t >= kh - 1) & (r < jnp.minimum(r0 + rows, out_h)) & (cols < out_w) & c_ok
        _store(out_ref, image_row(n, r, cols, (out_h, out_w)), c, ok, done)
        later = [pending[m] + tap_row(kh - 1 - m) for m in range(1, kh - 1)]
        return (*later, tap_row(0)) if kh > 1 else ()

    pending = tuple(jnp.zeros((bm, bn), acc_t) for _ in range(kh - 1))
    jax.lax.fori_loop(0, rows + kh - 1, body, pending)


def _out_struct(shape: tuple[int, ...], dtype: Any, like: Array) -> jax.ShapeDtypeStruct:
    """A pallas_call output varying over the shard_map axes `like` varies over (if any)."""
    return jax.ShapeDtypeStruct(shape, dtype, manual_axis_type=jax.typeof(like).manual_axis_type)


def _compiler_params(config: BlockConfig) -> Any:
    return plgpu.CompilerParams(num_warps=config.num_warps, num_stages=config.num_stages)


def _pixel_call(
    problem: PixelProblem,
    image: Array,
    w2: Array,
    bias: Array | None,
    previous: Array | None,
    *,
    config: BlockConfig,
    out_dtype: Any,
    precision: Any,
    interpret: bool,
) -> Array:
    """One pixel-major pallas_call: (N * in_h * in_w, ...) image -> (N * out_h * out_w, ...).

    previous: the output of the phases before this one, updated in place.
    """
    geo = problem.geometry
    config = pixel_config(problem, config)
    out_h, out_w = problem.out_hw
    out_shape = (geo.n * out_h * out_w, geo.groups * problem.cols_per_group)
    operands = [image, w2] + ([] if bias is None else [bias])
    aliases = {}
    if previous is not None:
        aliases = {len(operands): 0}
        operands.append(previous)
    if rolls_rows(geo, config):  # a strip of rows per program, rolling down the input
        out_h, out_w = problem.out_hw
        grid = (
            geo.n * pl.cdiv(out_h, config.rows),
            pl.cdiv(out_w, config.block_m),
            pl.cdiv(geo.c, config.block_n),
        )
        kernel = functools.partial(
            _depthwise_rows_kernel, problem=problem, config=config, has_bias=bias is not None
        )
    elif geo.depthwise:  # every channel in one program's block, no dot
        grid = (pl.cdiv(problem.rows, config.block_m), pl.cdiv(geo.c, config.block_n), 1)
        kernel = functools.partial(
            _depthwise_pixel_kernel, problem=problem, config=config, has_bias=bias is not None
        )
    else:
        grid = (
            pl.cdiv(problem.rows, config.block_m),
            pl.cdiv(problem.cols_per_group, config.block_n),
            geo.groups,
        )
        kernel = functools.partial(
            _pixel_kernel,
            problem=problem,
            config=config,
            precision=precision,
            has_bias=bias is not None,
        )
    return pl.pallas_call(
        kernel,
        out_shape=_out_struct(out_shape, out_dtype, image),
        grid=grid,
        input_output_aliases=aliases,
        compiler_params=_compiler_params(config),
        interpret=interpret,
        name=f"jconv_conv_{problem.product}",
    )(*operands)


def forward(
    x: Array,
    w: Array,
    bias: Array | None,
    geometry: ConvGeometry,
    *,
    config: BlockConfig,
    out_dtype: Any,
    precision: Any = None,
    interpret: bool = False,
) -> Array:
    """y = conv(x, w) + bias: x (N, H, W, C), w (kh, kw, C/groups, O) -> (N, mh, mw, O)."""
    geo = geometry
    [problem] = pixel_problems(geo, "y")
    y = _pixel_call(
        problem,
        x.reshape(-1, geo.c),
        w.reshape(-1, geo.o),
        bias,
        None,
        config=config,
        out_dtype=out_dtype,
        precision=precision,
        interpret=interpret,
    )
    return y.reshape(geo.y_shape())


def input_grad(
    dy: Array,
    w: Array,
    geometry: ConvGeometry,
    *,
    config: BlockConfig,
    out_dtype: Any,
    precision: Any = None,
    interpret: bool = False,
) -> Array:
    """dx: dy (N, mh, mw, O), w (kh, kw, C/groups, O) -> (N, H, W, C).

    One pallas_call per stride phase, each filling its own rows of dx in place.
    """
    geo = geometry
    dy2, w2 = dy.reshape(-1, geo.o), w.reshape(-1, geo.o)
    dx = None
    for problem in pixel_problems(geo, "x"):
        dx = _pixel_call(
            problem,
            dy2,
            w2,
            None,
            dx,
            config=config,
            out_dtype=out_dtype,
            precision=precision,
            interpret=interpret,
        )
    assert dx is not None
    return dx.reshape(geo.x_shape())


# --- 'w': rows are (tap, input channel), the contraction runs over output pixels ---


def _pixel_splits(geo: ConvGeometry, config: BlockConfig) -> tuple[Any, Any, int, Any]:
    """What the kernel-gradient kernels share: the forward pass's phase along each axis,
    the output pixels they contract over, and the blocks of block_k pixels per split."""
    (mh, mw), (sh, sw), (dh, dw) = geo.out_hw, geo.stride, geo.dilation
    (top, _), (left, _) = geo.pads
    fh = forward_phase(geo.height, mh, geo.kh, sh, dh, top)
    fw = forward_phase(geo.width, mw, geo.kw, sw, dw, left)
    pixels = geo.n * mh * mw
    return fh, fw, pixels, pl.cdiv(pl.cdiv(pixels, config.block_k), config.split_k)


def _split_refs(refs: tuple[Any, ...], serial: bool) -> tuple[Any, Any]:
    """(out_ref, count_ref or None) from a kernel-gradient kernel's refs after x and dy."""
    if serial:  # (counters at launch, out, counters): the first aliases the last
        _, out_ref, count_ref = refs
        return out_ref, count_ref
    (out_ref,) = refs
    return out_ref, None


def _tap_kernel(
    x_ref, dy_ref, *refs, geometry: ConvGeometry, config: BlockConfig, precision, interpret: bool
):
    """block_m (tap, channel) rows x block_n output channels of dw, one group, one split:
    for config.tap_group taps at once, one tile per tap.

    x_ref: (N * H * W, C); dy_ref: (N * mh * mw, O); out_ref: (split_k * kh * kw * cg, O),
    this split's partial sum over its share of the output pixels; or, with
    config.serial, (kh * kw * cg, O), to which the splits add in turn (count_ref:
    one counter per program's tiles).
    With tap_group > 1 (not flat) a program keeps an accumulator for each of its taps,
    and each block of dy it loads serves all of them: a program per tap loads every
    block of dy kh * kw times over, which makes ResNet's kernel gradients move more
    bytes from the L2 cache than their dots need (BENCHMARKS.md, session 10).
    """
    geo = geometry
    out_ref, count_ref = _split_refs(refs, config.serial)
    bm, bn, bk, splits = config.block_m, config.block_n, config.block_k, config.split_k
    fh, fw, pixels, chunk = _pixel_splits(geo, config)
    mh, mw = geo.out_hw
    g, s = divmod_nonneg(pl.program_id(2), splits)
    cols = pl.program_id(1) * bn + jnp.arange(bn)
    cols_ok = cols < geo.og
    taps_rows = geo.kh * geo.kw * geo.cg
    tiles: list[tuple[Any, Any, Any, Any]]  # (i, j, ch, rows_ok) of each accumulator
    if config.flat:  # rows are (i, j, channel), flattened
        r = pl.program_id(0) * bm + jnp.arange(bm)
        i, j, ch = split_contraction(r, geo.kw, geo.cg)
        tiles = [(i[None, :], j[None, :], ch[None, :], (r < taps_rows)[None, :])]
    else:  # tap_group taps per program, bm channels
        group = config.tap_group
        tap_block, c = divmod_nonneg(pl.program_id(0), pl.cdiv(geo.cg, bm))
        ch = (c * bm + jnp.arange(bm))[None, :]
        tiles = []
        for q in range(group):
            tap = tap_block * group + q
            tiles.append((*divmod_nonneg(tap, geo.kw), ch, (ch < geo.cg) & (tap < geo.kh * geo.kw)))

    def body(t, accs):
        p = (s * chunk + t) * bk + jnp.arange(bk)
        p_ok = (p < pixels)[:, None]
        n, a, b = split_pixel(p[:, None], mh, mw)
        dy_tile = _load(dy_ref, p[:, None], g * geo.og + cols[None, :], p_ok & cols_ok[None, :])
        out = []
        for (i, j, ch, rows_ok), acc in zip(tiles, accs):
            ih, ok_h = phase_input(fh, a, i)
            iw, ok_w = phase_input(fw, b, j)
            x_tile = _load(  # (bk, bm)
                x_ref,
                image_row(n, ih, iw, (geo.height, geo.width)),
                g * geo.cg + ch,
                p_ok & ok_h & ok_w & rows_ok,
            )
            out.append(acc + _dot(x_tile, dy_tile, precision, trans_a=True))  # (bm, bn)
        return tuple(out)

    zeros = jnp.zeros((bm, bn), acc_dtype(x_ref.dtype, dy_ref.dtype))
    accs = jax.lax.fori_loop(0, chunk, body, tuple(zeros for _ in tiles))
    cols = g * geo.og + cols[None, :]
    if count_ref is None:
        for (i, j, ch, rows_ok), acc in zip(tiles, accs):
            rows = s * taps_rows + kernel_row(i, j, ch, geo).T
            _store(out_ref, rows, cols, rows_ok.T & cols_ok[None, :], acc)
    else:
        tile = (pl.program_id(0) * pl.num_programs(1) + pl.program_id(1)) * geo.groups + g
        _wait_turn(count_ref, tile, s)
        for (i, j, ch, rows_ok), acc in zip(tiles, accs):
            mask = rows_ok.T & cols_ok[None, :]
            _add_store(out_ref, kernel_row(i, j, ch, geo).T, cols, mask, acc, s == 0)
        _pass_turn(count_ref, tile, interpret)


def _depthwise_tap_kernel(
    x_ref, dy_ref, *refs, geometry: ConvGeometry, config: BlockConfig, interpret: bool
):
    """dw of a depthwise convolution: block_n channels, one split of the pixels, and one tap
    (the grid's first axis) or, with config.flat, every tap.

    x_ref: (N * H * W, C); dy_ref: (N * mh * mw, C); out_ref: (split_k * kh * kw, C),
    or with config.serial (kh * kw, C) and count_ref, as for _tap_kernel.
    The elementwise products of block_k pixels are summed over the pixels once, at the
    end. With every tap in one program each block of dy is read once for all kh * kw
    taps (a program per tap reads it kh * kw times) and the taps' shifted blocks of x
    overlap, so they come mostly from the cache; kh * kw accumulators of (block_k,
    block_n) then live in registers, which suits small kernels and blocks.
    """
    geo = geometry
    out_ref, count_ref = _split_refs(refs, config.serial)
    bn, bk = config.block_n, config.block_k
    fh, fw, pixels, chunk = _pixel_splits(geo, config)
    mh, mw = geo.out_hw
    s = pl.program_id(2)
    taps: list[tuple[Any, tuple[Any, Any]]]  # (tap, its kernel row and column)
    if config.flat:
        taps = [(t, divmod(t, geo.kw)) for t in range(geo.kh * geo.kw)]
    else:
        taps = [(pl.program_id(0), divmod_nonneg(pl.program_id(0), geo.kw))]
    c = (pl.program_id(1) * bn + jnp.arange(bn))[None, :]
    c_ok = c < geo.c
    acc_t = acc_dtype(x_ref.dtype, dy_ref.dtype)

    def body(t, accs):
        p = (s * chunk + t) * bk + jnp.arange(bk)
        p_ok = (p < pixels)[:, None]
        n, a, b = split_pixel(p[:, None], mh, mw)
        dy = _load(dy_ref, p[:, None], c, p_ok & c_ok).astype(acc_t)
        out = []
        for (_, (i, j)), acc in zip(taps, accs):
            ih, ok_h = phase_input(fh, a, i)
            iw, ok_w = phase_input(fw, b, j)
            rows = image_row(n, ih, iw, (geo.height, geo.width))
            x = _load(x_ref, rows, c, p_ok & ok_h & ok_w & c_ok)
            out.append(acc + x.astype(acc_t) * dy)
        return tuple(out)

    accs = jax.lax.fori_loop(0, chunk, body, tuple(jnp.zeros((bk, bn), acc_t) for _ in taps))
    sums = [(t, jnp.sum(acc, axis=0, keepdims=True)) for (t, _), acc in zip(taps, accs)]
    if count_ref is None:
        for t, total in sums:
            _store(out_ref, s * geo.kh * geo.kw + t, c, c_ok, total)
    else:
        tile = pl.program_id(0) * pl.num_programs(1) + pl.program_id(1)
        _wait_turn(count_ref, tile, s)
        for t, total in sums:
            _add_store(out_ref, t, c, c_ok, total, s == 0)
        _pass_turn(count_ref, tile, interpret)


def _depthwise_rows_tap_kernel(
    x_ref, dy_ref, out_ref, *, geometry: ConvGeometry, config: BlockConfig
):
    """dw of a depthwise convolution at stride 1: config.rows rows x block_m columns of dy
    x block_n channels per program, rolling down the rows of x.

    dw[i, j] = sum_(r, c) x[r + i - top, c + j - left] * dy[r, c], one channel at a
    time. Each row of x is loaded once per horizontal tap and meets the kh rows of dy it
    pairs with, kept as they were loaded (a window of kh rows); each row of dy is loaded
    once. One accumulator per tap, summed over the columns at the end: out_ref
    (programs * kh * kw, C) holds each program's sums, added up afterwards.
    """
    geo = geometry
    kh, kw = geo.kh, geo.kw
    (mh, mw), (height, width) = geo.out_hw, (geo.height, geo.width)
    (top, _), (left, _) = geo.pads
    rows, bm, bn = config.rows, config.block_m, config.block_n
    n, strip = divmod_nonneg(pl.program_id(0), pl.cdiv(mh, rows))
    r0 = strip * rows
    cols = (pl.program_id(1) * bm + jnp.arange(bm))[:, None]
    channels = pl.program_id(2) * bn + jnp.arange(bn)
    c, c_ok = channels[None, :], (channels < geo.c)[None, :]
    acc_t = acc_dtype(x_ref.dtype, dy_ref.dtype)

    def body(t, carry):
        """Row r0 + t - top of x; window[i] is row r0 + t - i of dy (zero outside the strip)."""
        accs, window = carry
        r = r0 + t
        dy_ok = (t < rows) & (r < mh) & (cols < mw) & c_ok
        newest = _load(dy_ref, image_row(n, r, cols, (mh, mw)), c, dy_ok).astype(acc_t)
        window = (newest, *window)
        ir = r - top
        row_ok = (ir >= 0) & (ir < height)
        out = []
        for j in range(kw):
            ic = cols + j - left
            ok = row_ok & (ic >= 0) & (ic < width) & c_ok
            xj = _load(x_ref, image_row(n, ir, ic, (height, width)), c, ok).astype(acc_t)
            out.append([accs[i * kw + j] + xj * window[i] for i in range(kh)])
        accs = tuple(out[j][i] for i in range(kh) for j in range(kw))
        return accs, window[: kh - 1]

    zeros = jnp.zeros((bm, bn), acc_t)
    accs = tuple(zeros for _ in range(kh * kw))
    accs, _ = jax.lax.fori_loop(0, rows + kh - 1, body, (accs, tuple(zeros for _ in range(kh - 1))))
    program = pl.program_id(0) * pl.num_programs(1) + pl.program_id(1)
    for t, acc in enumerate(accs):
        total = jnp.sum(acc, axis=0, keepdims=True)
        _store(out_ref, jnp.full((1, 1), program * kh * kw + t), c, c_ok, total)


def kernel_grad(
    x: Array,
    dy: Array,
    geometry: ConvGeometry,
    *,
    config: BlockConfig,
    out_dtype: Any,
    precision: Any = None,
    interpret: bool = False,
) -> Array:
    """dw: x (N, H, W, C), dy (N, mh, mw, O) -> (kh, kw, C/groups, O).

    The split_k partial sums are added here, in the accumulation dtype, then rounded;
    with config.serial the splits add them in place instead, one after another in
    split order (so the sum is the same on every run), and no partial sums are held.
    """
    sums, _ = kernel_grad_sums(
        x, dy, geometry, config=config, precision=precision, interpret=interpret
    )
    return (sums[0] if len(sums) == 1 else sums.sum(0)).astype(out_dtype)


def kernel_grad_sums(
    x: Array,
    dy: Array,
    geometry: ConvGeometry,
    *,
    config: BlockConfig,
    precision: Any = None,
    interpret: bool = False,
) -> tuple[Array, Array | None]:
    """The kernel gradient's pallas_call: (sums (S, kh, kw, C/groups, O), counters).

    S is split_k partial sums, 1 with config.serial, or one per program of a depthwise
    kernel gradient that rolls down the rows (config.rows); the counters (serial only:
    one per tile, each split_k when every split has added its share) are None otherwise.
    """
    geo = geometry
    splits = config.split_k
    rolling = rolls_rows(geo, config)
    config = dataclasses.replace(
        config,
        serial=config.serial and splits > 1 and not rolling,
        tap_group=min(config.tap_group, geo.kh * geo.kw),
    )
    acc = acc_dtype(x.dtype, dy.dtype)
    if rolling:  # a strip of rows per program; each program's own sums
        mh, mw = geo.out_hw
        grid = (
            geo.n * pl.cdiv(mh, config.rows),
            pl.cdiv(mw, config.block_m),
            pl.cdiv(geo.c, config.block_n),
        )
        kernel = functools.partial(_depthwise_rows_tap_kernel, geometry=geo, config=config)
    elif geo.depthwise:  # a program per tap, or one for every tap (flat)
        grid = (1 if config.flat else geo.kh * geo.kw, pl.cdiv(geo.c, config.block_n), splits)
        kernel = functools.partial(
            _depthwise_tap_kernel, geometry=geo, config=config, interpret=interpret
        )
    else:
        row_blocks = (
            pl.cdiv(geo.kh * geo.kw * geo.cg, config.block_m)
            if config.flat
            else pl.cdiv(geo.kh * geo.kw, config.tap_group) * pl.cdiv(geo.cg, config.block_m)
        )
        grid = (row_blocks, pl.cdiv(geo.og, config.block_n), geo.groups * splits)
        kernel = functools.partial(
            _tap_kernel, geometry=geo, config=config, precision=precision, interpret=interpret
        )
    operands = [x.reshape(-1, geo.c), dy.reshape(-1, geo.o)]
    sums = grid[0] * grid[1] if rolling else 1 if config.serial else splits
    out_shape = [_out_struct((sums * geo.kh * geo.kw * geo.cg, geo.o), acc, x)]
    aliases = {}
    if config.serial:  # a counter per tile, zero at launch, updated in place
        tiles = grid[0] * grid[1] * grid[2] // splits
        operands.append(jnp.zeros((tiles,), jnp.int32))
        out_shape.append(_out_struct((tiles,), jnp.int32, x))
        aliases = {2: 1}
    outs = pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        input_output_aliases=aliases,
        compiler_params=_compiler_params(config),
        interpret=interpret,
        name="jconv_conv_w",
    )(*operands)
    return outs[0].reshape(sums, *geo.w_shape()), (outs[1] if config.serial else None)
