"""method='winograd': the input-channel sum done in Winograd's transformed domain.

Each single-channel correlation X_i ⋆ W_(o,i) of the lesson is computed tile by
tile with Winograd's minimal filtering F(2x2, kh x kw): an input tile
d (a_h x a_w, a = 2 + k - 1) and a kernel g are transformed, V = BT d B and
U = G g GT, multiplied elementwise and transformed back, Y = AT (U ⊙ V) A, giving
a 2x2 output tile with a_h * a_w multiplications instead of 4 * kh * kw. The
lesson's sum over input channels and its vmap over output channels then turn
each of the a_h * a_w transformed positions into one matrix product,
(N * tiles) x C times C x O: 16 GEMMs for a 3x3 kernel doing 4/9 of the
multiply-adds of the 9 GEMMs of 'taps' (for 5x5: 36/100).

The gradients are built from the same pieces: the one with respect to x is
the correlation of the output gradient, padded so that it comes out
(N, H, W, C), with the flipped kernel (Winograd again, contracting output
channels), and the one with respect to the kernel is taken in the transformed
domain, one GEMM per position contracting the batch and the tiles
(`_kernel_gradient`). The three are the members y, dx and dw of one JAX
primitive (jconv/_conv_primitive.py), so every transformation works, forward
mode included, and each is checked: the transforms add and subtract values
within a tile, so an Inf in an operand would turn into NaN where lax gives
Inf, and a sum of large values can overflow where the convolution's does not.
A result that is not all finite is computed again exactly. The transforms run
in float32 for float16 and bfloat16 inputs; the GEMMs take bfloat16 (float32's
range) but not float16 (see ConvSpec.gemm_dtype).

Supported: stride 1, dilation 1, groups 1, kernels up to 5x5 (larger ones need
interpolation points whose rounding error grows). Everything else, and
1x1 kernels, which have nothing to save, runs 'taps'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jconv._checks import ConvSpec
from jconv._conv_primitive import lowered_conv
from jconv._layouts import relayout
from jconv._lowering import Lowering, explicit_spec
from jconv._method_taps import TAPS, conv_taps
from jconv._padding import zero_pad_or_crop
from jconv._typing import Array
from jconv._winograd_matrices import winograd_matrices

TILE = 2  # output pixels per tile along each axis: F(2, k), the most accurate choice
MAX_KERNEL = 5
# Kernels this tall or wide transform as one matrix product (_kernel_transform).
DENSE_KERNEL_TRANSFORM = 4
# Float32 GEMMs over at most this many tiles an image, not a power of two along a side,
# take their tiles in (th, tw, N, C) order (`_tile_major`).
TILE_MAJOR_MAX_TILES = 64

Grid = list[list[Array]]  # grid[u][v]: one array per position of a 2-D tile


def winograd_supported(spec: ConvSpec) -> bool:
    """Whether 'winograd' runs its own transform for spec (otherwise it runs 'taps')."""
    return (
        spec.stride == (1, 1)
        and spec.dilation == (1, 1)
        and spec.groups == 1
        and spec.kh * spec.kw > 1
        and max(spec.kh, spec.kw) <= MAX_KERNEL
    )


def _combine(matrix: np.ndarray, terms: Sequence[Array]) -> list[Array]:
    """[sum_j matrix[i, j] * terms[j] for each row i], skipping zeros and unit factors.

    Skipping the zeros keeps the transforms as cheap as the hand-written ones,
    and keeps an Inf in one term from reaching rows that do not use it.
    """
    rows = []
    for coefficients in matrix:
        total = None
        for c, term in zip(coefficients, terms):
            if c == 0:
                continue
            t = term if c == 1 else -term if c == -1 else term * c
            total = t if total is None else total + t
        rows.append(total if total is not None else jnp.zeros_like(terms[0]))
    return rows


def _transform_2d(rows: np.ndarray, cols: np.ndarray, grid: Grid) -> Grid:
    """out[p][q] = sum_{u, v} rows[p, u] * cols[q, v] * grid[u][v], one axis at a time."""
    along_rows = [
        _combine(rows, [grid[u][v] for u in range(len(grid))]) for v in range(len(grid[0]))
    ]
    return [
        _combine(cols, [along_rows[v][p] for v in range(len(grid[0]))]) for p in range(len(rows))
    ]


def _kernel_transform(rows: np.ndarray, cols: np.ndarray, k: Array | Grid) -> Array:
    """out[p, q] = sum_{i, j} rows[p, i] * cols[q, j] * k[i][j]; k[i][j] and out[p, q]: (C, O).

    U = G g GT of a kernel (k: (kh, kw, C, O)), and GT dU G of the kernel gradient (k:
    a grid, or one (a_h, a_w, C, O) array). Up to 3x3 it is written out coefficient by
    coefficient (_transform_2d), as the tiles are. From DENSE_KERNEL_TRANSFORM on, it is
    one matrix product, (rows ⊗ cols) @ k viewed as (i * j, C * O), which needs no layout
    change of the kernel: written out, a 5x5 kernel's transforms were 1424 of the 3804
    operations of the lesson's forward program. On 3x3 kernels the product ran slower
    than the written-out form (BENCHMARKS.md, session 4). HIGHEST: sums exact in the
    accumulation dtype on every platform, as the written-out form's are.
    """
    (p, i), (q, j) = rows.shape, cols.shape
    if max(min(p, i), min(q, j)) < DENSE_KERNEL_TRANSFORM:  # the kernel's side: a = k + 1
        grid = k if isinstance(k, list) else [[k[a, b] for b in range(j)] for a in range(i)]
        return jnp.stack([jnp.stack(row) for row in _transform_2d(rows, cols, grid)])
    if isinstance(k, list):
        k = jnp.stack([jnp.stack(row) for row in k])
    flat = k.reshape(i * j, -1)
    out = jnp.dot(jnp.asarray(np.kron(rows, cols), k.dtype), flat, precision="highest")
    return out.reshape(p, q, *k.shape[2:])


def _tile_counts(mh: int, mw: int) -> tuple[int, int]:
    """Tiles along each axis that cover an (mh, mw) output."""
    return -(-mh // TILE), -(-mw // TILE)


def transformed_output_bytes(spec: ConvSpec) -> int:
    """Bytes of the forward pass's GEMM results in float32: one (N * th * tw, O) product per
    transformed position, (TILE + kh - 1) * (TILE + kw - 1) of them."""
    th, tw = _tile_counts(*spec.out_hw)
    positions = (TILE + spec.kh - 1) * (TILE + spec.kw - 1)
    return positions * max(spec.n, 1) * th * tw * spec.o * 4


def _tile_grid(
    x: Array,
    low: tuple[int, int],
    tiles: tuple[int, int],
    size: tuple[int, int],
    step: tuple[int, int] = (TILE, TILE),
    tile_major: bool = False,
) -> Grid:
    """grid[u][v] = xp[:, a * sh + u, b * sw + v] for every tile (a, b): (N, th, tw, C),
    or (th, tw, N, C) where tile_major (`_tile_major`); (sh, sw) = step (TILE along both
    axes; WINOGRAD_1D's width-only tiles take a step of 1 down the rows).

    xp is `_tiled_input`: x with `low` zero rows and columns in front (negative:
    cropped), zero-padded or cropped at the end to exactly cover the tiles.
    """
    (th, tw), (ah, aw), (sh, sw) = tiles, size, step
    x = _tiled_input(x, low, tiles, size, step)
    order = (1, 2, 0, 3) if tile_major else (0, 1, 2, 3)
    return [
        [
            x[:, u : u + (th - 1) * sh + 1 : sh, v : v + (tw - 1) * sw + 1 : sw].transpose(order)
            for v in range(aw)
        ]
        for u in range(ah)
    ]


def _tiled_input(
    x: Array,
    low: tuple[int, int],
    tiles: tuple[int, int],
    size: tuple[int, int],
    step: tuple[int, int] = (TILE, TILE),
) -> Array:
    """x with `low` zero rows and columns in front (negative: cropped), zero-padded or
    cropped at the end to exactly cover `tiles` tiles of `size` pixels, `step` apart."""
    (th, tw), (ah, aw), (top, left), (sh, sw) = tiles, size, low, step
    need_h, need_w = (th - 1) * sh + ah, (tw - 1) * sw + aw
    return zero_pad_or_crop(
        x, [(0, 0), (top, need_h - top - x.shape[1]), (left, need_w - left - x.shape[2]), (0, 0)]
    )


def _stacked_transform(
    rows: np.ndarray,
    cols: np.ndarray,
    x: Array,
    low: tuple[int, int],
    tiles: tuple[int, int],
) -> Array:
    """out[p * a_w + q] = sum_{u, v} rows[p, u] * cols[q, v] * tile_uv, all positions
    stacked in one array: x (N, H, W, C) -> (a_h * a_w, N * th * tw, C), tiles of
    (rows.shape[1], cols.shape[1]) pixels TILE apart, x padded in front by `low`.

    `_transform_2d` gives one array per position, and XLA:CPU one kernel per array, each
    compiled at about 12 ms (BENCHMARKS.md, session 15). This is two kernels: the rows'
    combinations for every position at once, each a sum over the whole column of
    coefficients (a zero coefficient multiplies too), then, behind an optimization
    barrier so that XLA does not recompute them for every column position, the
    columns'. A zero times an Inf here gives NaN where the written-out form skips the
    term; either way the member's result is not all finite, and the guard recomputes it.
    """
    (th, tw), (ah, aw) = tiles, (rows.shape[1], cols.shape[1])
    x = _tiled_input(x, low, tiles, (ah, aw))
    n, c = x.shape[0], x.shape[-1]
    by_rows = sum(
        jnp.asarray(rows[:, u], x.dtype).reshape(-1, 1, 1, 1, 1)
        * x[None, :, u : u + (th - 1) * TILE + 1 : TILE]
        for u in range(ah)
        if rows[:, u].any()
    )  # (A_h, N, th, W', C)
    by_rows = jax.lax.optimization_barrier(by_rows)
    out = sum(
        jnp.asarray(cols[:, v], x.dtype).reshape(1, -1, 1, 1, 1, 1)
        * by_rows[:, None, :, :, v : v + (tw - 1) * TILE + 1 : TILE]
        for v in range(aw)
        if cols[:, v].any()
    )  # (A_h, A_w, N, th, tw, C)
    # One merge at a time: JAX's explicit sharding mode refuses the two at once.
    out = out.reshape(rows.shape[0], cols.shape[0], n * th * tw, c)
    return out.reshape(rows.shape[0] * cols.shape[0], n * th * tw, c)


def _input_transform(
    x: Array,
    kernel_hw: tuple[int, int],
    low: tuple[int, int],
    tiles: tuple[int, int],
    tile_major: bool,
) -> Grid:
    """V = BT d B for every input tile d of x (padded in front by `low`), in `_tile_grid`'s
    order.

    The first step of both the forward pass and the kernel gradient.
    """
    kh, kw = kernel_hw
    fh, fw = winograd_matrices(TILE, kh), winograd_matrices(TILE, kw)
    size = (TILE + kh - 1, TILE + kw - 1)
    return _transform_2d(fh.bt, fw.bt, _tile_grid(x, low, tiles, size, tile_major=tile_major))


def _tile_major(spec: ConvSpec, x: Array, tiles: tuple[int, int]) -> bool:
    """Whether the GEMMs take their tiles in (th, tw, N, C) order, not (N, th, tw, C).

    The order changes no arithmetic, only the index arithmetic of the fused loop that makes
    each position's GEMM operand, (N * th * tw, C). Where a side of a small tile grid is not
    a power of two (3, 5, 6 or 7 tiles), XLA:CPU's LLVM took 2x to 3x longer to compile
    that loop in (N, th, tw) order for 96 to 512 float32 channels (powers of two and grids
    of 8 tiles a side and more: no difference): ResNet's 14x14 layer (7 x 7 tiles, 256
    channels) compiled its forward pass in 0.9 to 1.2 s and with the gradient in 1.6 to
    2.1 s, against 0.5 to 0.7 and 1.1 to 1.5 s in (th, tw, N) order, running at 0.96x to
    1.04x the speed. Elsewhere the (th, tw, N) order ran 0.90x to 0.96x on larger grids,
    0.89x to 1.03x with a slower compile on 4 x 4 grids, and 0.79x to 0.98x with bfloat16
    GEMMs, whose operand loops compile fast either way: those keep (N, th, tw)
    (BENCHMARKS.md, session 18).

    x: the (N, H, W, C) operand the tiles are cut from. Where JAX's explicit sharding mode
    splits its batch, the kernel gradient could not merge (th, tw, N) into the GEMM's rows
    (the split axis would not lead), so the order stays (N, th, tw).
    """
    float32_gemms = np.dtype(_gemm_dtype(spec)) == np.dtype(spec.acc_dtype)
    batch_split = (split := explicit_spec(x)) is not None and split[0] is not None
    small = tiles[0] * tiles[1] <= TILE_MAJOR_MAX_TILES
    uneven = any(side & (side - 1) for side in tiles)  # a side not a power of two
    return float32_gemms and small and uneven and not batch_split


def _gemm_dtype(spec: ConvSpec) -> Any:
    """The dtype the transformed operands enter the GEMMs in."""
    # Transformed values are sums: float16 would overflow first, and where the caller asks
    # for a wider result (preferred_element_type) bfloat16 would round them to its 8 bits
    wider = np.dtype(spec.out_dtype).itemsize > np.dtype(spec.dtype).itemsize
    return spec.acc_dtype if wider else spec.gemm_dtype


def _matmul_grid(
    spec: ConvSpec, subscripts: str, a: Grid, b: Grid, out_sharding: Any = None
) -> Grid:
    """One matrix product per transformed position: the lesson's input-channel sum.

    out_sharding: where a contraction over a sharded axis (the batch, for the
    kernel gradient) should leave its result, as JAX's explicit sharding mode asks.
    """
    gemm = _gemm_dtype(spec)
    return [
        [
            jnp.einsum(
                subscripts,
                a_pq.astype(gemm),
                b_pq.astype(gemm),
                precision=spec.precision,
                preferred_element_type=spec.acc_dtype,
                out_sharding=out_sharding,
            )
            for a_pq, b_pq in zip(a_row, b_row)
        ]
        for a_row, b_row in zip(a, b)
    ]


def _correlate(x: Array, w: Array, spec: ConvSpec, pads, *, transposed: bool) -> Array:
    """Stride-1 correlation of x: (N, H, W, Cin), zero-padded by pads, with a (kh, kw) kernel.

    w is (kh, kw, C, O). transposed=False contracts C (the forward pass: Cin = C);
    transposed=True flips the kernel and contracts O (the gradient with respect to x:
    Cin = O, out channels C). pads ((top, bottom), (left, right)) may be negative
    (a crop). Returns (N, mh, mw, out channels) in the accumulation dtype.
    """
    kh, kw = w.shape[:2]
    (top, bottom), (left, right) = pads
    mh, mw = x.shape[1] + top + bottom - kh + 1, x.shape[2] + left + right - kw + 1
    fh, fw = winograd_matrices(TILE, kh), winograd_matrices(TILE, kw)
    tiles = _tile_counts(mh, mw)
    tile_major = _tile_major(spec, x, tiles)
    v_grid = _input_transform(x, (kh, kw), (top, left), tiles, tile_major)
    u = _kernel_transform(fh.g, fw.g, w[::-1, ::-1] if transposed else w)
    u_grid = [list(row) for row in u]  # (C, O) each
    tiles_in, tiles_out = ("hwnc", "hwno") if tile_major else ("nhwc", "nhwo")
    subscripts = f"{tiles_out},co->{tiles_in}" if transposed else f"{tiles_in},co->{tiles_out}"
    m_grid = _matmul_grid(spec, subscripts, v_grid, u_grid)
    y_grid = _transform_2d(fh.at, fw.at, m_grid)  # y_grid[p][q]: (N, th, tw, out)
    if tile_major:  # the tiles back in (N, th, tw) order, in the interleave's fused loop
        y_grid = [[part.transpose(2, 0, 1, 3) for part in row] for row in y_grid]
    return _interleave(y_grid)[:, :mh, :mw]


def _interleave(grid: Grid, step: tuple[int, int] = (TILE, TILE)) -> Array:
    """grid[p][q]: (N, th, tw, C) -> y: (N, th*sh, tw*sw, C), y[:, a*sh + p, b*sw + q], with
    (sh, sw) = step (as `_tile_grid`'s).

    Each position is spread out by interior padding and the results summed (one
    fused loop). A reshape of (N, th, TILE, tw, TILE, C) would do the same, but
    JAX's explicit sharding mode refuses that reshape when N is sharded.
    """
    (sh, sw), zero = step, jnp.zeros((), grid[0][0].dtype)
    y = None
    for p, row in enumerate(grid):
        for q, part in enumerate(row):
            widths = ((0, 0, 0), (p, sh - 1 - p, sh - 1), (q, sw - 1 - q, sw - 1), (0, 0, 0))
            spread = jax.lax.pad(part, zero, widths)
            y = spread if y is None else y + spread
    assert y is not None
    return y


def _kernel_gradient(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """d loss / d w, (kh, kw, C, O), in the transformed domain.

    The forward pass is y = AT (V ⊙ U) A per tile, with U = G w GT; its transpose
    gives dU = V^T dM, dM = A dy AT per tile, and dw = GT dU G: the same
    a_h * a_w GEMMs, now contracting the batch and the tiles. kernel_sharding: the
    kernel's (OIHW), where each (C, O) contraction over the (possibly sharded) batch
    lands.

    Where the GEMMs take float32 operands, V is the forward pass's own, position by
    position (the same operations on the same x), which XLA computes once for both.
    Where they take bfloat16 (`_gemm_dtype`), it is not: the forward pass's V is rounded
    in the fusion that makes it, and XLA:CPU, which runs these A^T B products on Eigen in
    float32, widened each position's copy again, a kernel per position. There V and dM
    are each made as one stacked array (`_stacked_transform`) and the GEMMs run as one
    batched product: about 45 fewer kernels, which took 0.05 to 0.56 s off the compile
    time with the gradient on ResNet's and CIFAR's 3x3 layers (to 1.37 to 1.78 s), for
    0.88x to 1.04x the per-position form's speed (BENCHMARKS.md, session 16).
    """
    (top, _), (left, _) = spec.pads
    tiles = _tile_counts(*dy.shape[1:3])
    fh, fw = winograd_matrices(TILE, spec.kh), winograd_matrices(TILE, spec.kw)
    gemm = _gemm_dtype(spec)
    if np.dtype(gemm) != np.dtype(spec.acc_dtype):
        v = _stacked_transform(fh.bt, fw.bt, x, (top, left), tiles)
        dm = _stacked_transform(fh.at.T, fw.at.T, dy, (0, 0), tiles)
        du = jnp.einsum(
            "pmc,pmo->pco",
            v.astype(gemm),
            dm.astype(gemm),
            precision=spec.precision,
            preferred_element_type=spec.acc_dtype,
            out_sharding=_tap_sharding(kernel_sharding, leading=1),
        )
        return _kernel_transform(
            fh.g.T, fw.g.T, du.reshape(fh.bt.shape[0], fw.bt.shape[0], *du.shape[1:])
        )
    tile_major = _tile_major(spec, x, tiles)  # the forward pass's order: the same V
    v_grid = _input_transform(x, (spec.kh, spec.kw), (top, left), tiles, tile_major)
    dm_grid = _transform_2d(
        fh.at.T, fw.at.T, _tile_grid(dy, (0, 0), tiles, (TILE, TILE), tile_major=tile_major)
    )
    # Each position's product as one 2-D GEMM, (N*th*tw, C)^T (N*th*tw, O): with the
    # three contracted axes left separate, XLA copied V to a transposed layout first.
    flat = lambda grid: [[a.reshape(-1, a.shape[-1]) for a in row] for row in grid]
    du_grid = _matmul_grid(
        spec, "mc,mo->co", flat(v_grid), flat(dm_grid), _tap_sharding(kernel_sharding)
    )
    return _kernel_transform(fh.g.T, fw.g.T, du_grid)


def _tap_sharding(kernel_sharding: Any, leading: int = 0) -> Any:
    """Where one (C, O) tap of an OIHW kernel laid out as kernel_sharding lies (None:
    anywhere); with `leading` unsplit axes in front ((kh, C, O): a kernel column, 1)."""
    if not isinstance(kernel_sharding, NamedSharding):
        return None
    o_axis, i_axis = (*tuple(kernel_sharding.spec), None, None)[:2]
    return NamedSharding(kernel_sharding.mesh, P(*(None,) * leading, i_axis, o_axis))


def _to_nhwc(a: Array, spec: ConvSpec) -> Array:
    """A batched activation in spec.layout, as NHWC in the accumulation dtype."""
    return relayout(a.astype(spec.acc_dtype), spec.layout, "NHWC")


def _from_nhwc(a: Array, spec: ConvSpec, dtype: Any) -> Array:
    return relayout(a, "NHWC", spec.layout).astype(dtype)


def _hwio(w: Array, spec: ConvSpec) -> Array:
    return w.astype(spec.acc_dtype).transpose(2, 3, 1, 0)


def _winograd_y(x: Array, w: Array, spec: ConvSpec) -> Array:
    """The forward pass: x (batched, spec.layout), w OIHW -> y, zero-padded by spec.pads."""
    y = _correlate(_to_nhwc(x, spec), _hwio(w, spec), spec, spec.pads, transposed=False)
    return _from_nhwc(y, spec, spec.out_dtype)


def _winograd_dx(dy: Array, w: Array, spec: ConvSpec) -> Array:
    """dx: dy correlated with the flipped kernel, padded so that it comes out (N, H, W, C)."""
    dx_pads = spec.input_gradient_pads  # no dilation here: winograd_supported
    dx = _correlate(_to_nhwc(dy, spec), _hwio(w, spec), spec, dx_pads, transposed=True)
    return _from_nhwc(dx, spec, spec.dtype)


def _winograd_dw(x: Array, dy: Array, spec: ConvSpec, kernel_sharding: Any) -> Array:
    """dw, OIHW, from x and the output cotangent dy (both batched, spec.layout)."""
    dw = _kernel_gradient(_to_nhwc(x, spec), _to_nhwc(dy, spec), spec, kernel_sharding)
    return dw.transpose(3, 2, 0, 1).astype(spec.dtype)


WINOGRAD = Lowering("winograd", _winograd_y, _winograd_dx, _winograd_dw, grouped=TAPS)


def conv_winograd(x: Array, w: Array, spec: ConvSpec) -> Array:
    """x: batched, spec.layout; w: (O, C, kh, kw) -> batched output, spec.layout."""
    if not winograd_supported(spec):
        return conv_taps(x, w, spec)
    return lowered_conv(x, w, spec, WINOGRAD)
