"""Halo exchange: the spatial strategy's one idea, for one spatial axis.

An image axis of `size` rows is split into D blocks of B = size / D rows, one per
device. The output rows are split the same way: device d computes output rows
[d * mb, (d + 1) * mb) with mb = ceil(mh / D). Those rows read padded input rows
[d * mb * sh, d * mb * sh + (mb - 1) * sh + window), which overhang the device's
own block on either side by a few rows: the halo. Each device receives them from
its neighbours with one `jax.lax.ppermute` per direction, and the padded border
that lies outside the image is filled on the edge devices themselves:

- 'zeros': zeros (ppermute already gives zeros to a device with no sender);
- 'circular': the neighbours form a ring, so device 0's left halo is the end of
  the image, exactly the circular padding;
- 'reflect', 'replicate': the rows that fill the border (rows 1..top, or row 0)
  lie in the edge device's own block, which must therefore hold them.

When mb * sh differs from B (a 'VALID' convolution, or a stride that does not
divide B) the window's start drifts from block to block; each device then cuts
its window out of [left halo | block | right halo] at its own offset, found from
`jax.lax.axis_index`. When D does not divide mh the last devices compute
ceil(mh / D) * D - mh rows past the end, which `mask_tail` sets to zero.

Everything here is static geometry (`plan_halo`) plus one traced function
(`extend_with_halo`) that runs inside `jax.shard_map`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jconv._typing import Array


@dataclasses.dataclass(frozen=True)
class HaloPlan:
    """How one spatial axis is split over `devices` and which rows each device needs.

    Row counts are per device; the buffer each device assembles is
    [left | own block | right | tail] rows, and its window is `length` rows from
    `offsets[d]`.
    """

    devices: int  # D, the size of the mesh axis
    block: int  # B = size / D: input rows each device holds
    out_size: int  # mh: output rows of the whole image
    out_block: int  # mb = ceil(mh / D): output rows each device computes
    from_left: int  # rows each device receives from its left neighbour (its last rows)
    from_right: int  # rows each device receives from its right neighbour (its first rows)
    left: int  # halo rows before the block in the buffer (>= from_left)
    right: int  # halo rows after the block (>= from_right)
    tail: int  # zero rows after the right halo, read only by rows past the end
    offsets: tuple[int, ...]  # start of device d's window in its buffer
    length: int  # (mb - 1) * stride + window: input rows of the window
    padding_mode: str
    pads: tuple[int, int]  # the axis's global (before, after) padding

    @property
    def rows_sent(self) -> int:
        """Rows an interior device sends to its two neighbours together."""
        return self.from_left + self.from_right

    @property
    def padded_out(self) -> int:
        """Output rows of all the blocks together, mb * D >= mh."""
        return self.out_block * self.devices


def plan_halo(
    *,
    size: int,
    devices: int,
    pads: tuple[int, int],
    taps: int,
    dilation: int,
    stride: int,
    padding_mode: str,
    what: str = "height",
    axis_name: object = None,
) -> HaloPlan:
    """The halo geometry of one axis; a ValueError if a block cannot hold its halo.

    size, pads, taps, dilation and stride are the axis's global figures, as
    check_conv_args resolved them; `size` must be divisible by `devices`.
    """
    if size % devices:
        raise ValueError(
            f"spatial strategy: the {what} of x ({size}) is not divisible by the size "
            f"({devices}) of mesh axis {axis_name!r}"
        )
    top, bottom = pads
    block = size // devices
    window = (taps - 1) * dilation + 1
    out_size = (size + top + bottom - window) // stride + 1
    out_block = -(-out_size // devices)
    length = (out_block - 1) * stride + window
    circular = padding_mode == "circular"

    # For each device with at least one real output row: how far its window
    # reaches before (need_left) and after (need_right) its own block.
    need_left, need_right = {}, {}
    for d in range(devices):
        real = min(out_size - d * out_block, out_block)
        if real <= 0:
            continue
        start = d * out_block * stride  # padded coordinates
        own = d * block + top
        need_left[d] = own - start
        need_right[d] = start + (real - 1) * stride + window - (own + block)

    def comm(need: dict[int, int], edge: int) -> int:
        # Rows that come from a neighbour: every device's need, the edge device's
        # too on a ring; an edge device's border is otherwise filled locally.
        return max([0, *(v for d, v in need.items() if circular or d != edge)])

    from_left = comm(need_left, 0)
    from_right = comm(need_right, devices - 1)
    if max(from_left, from_right) > block:
        drift = out_block * stride - block
        why = (
            f"; each device's {out_block} output rows start {out_block * stride} input rows "
            f"after the previous device's, its block only {block}, so the windows drift "
            f"{abs(drift)} rows further from their blocks at every device"
            if drift
            else ""
        )
        raise ValueError(
            f"spatial strategy: a block of {block} {what} rows per device (x's {what} {size} / "
            f"{devices} devices on mesh axis {axis_name!r}) is smaller than its halo: "
            f"{max(from_left, from_right)} rows from a neighbour (kernel {taps} taps, dilation "
            f"{dilation}, stride {stride}, padding {pads}){why}; use fewer devices on this "
            "axis, a larger image, or another strategy"
        )
    if padding_mode == "reflect" and max(top, bottom) + 1 > block:
        # Row -k reflects row k: the edge device must hold rows 0..top itself.
        border = max(top, bottom) + 1
        raise ValueError(
            f"spatial strategy: reflect padding of {pads} on the {what} axis needs "
            f"{border} {what} rows of the image on each edge device, but a block holds "
            f"{block} ({what} {size} / {devices} devices on mesh axis {axis_name!r}); the "
            "spatial block is smaller than its halo"
        )
    left = max([from_left, *need_left.values()])
    right = max([from_right, *need_right.values()])
    buffer = left + block + right
    starts = [left - (d * block + top - d * out_block * stride) for d in range(devices)]
    tail = max(0, max(start + length for start in starts) - buffer)
    # A device whose rows all lie past the end may start before its buffer: its
    # output is masked, so clamp it anywhere in range.
    offsets = tuple(min(max(start, 0), buffer + tail - length) for start in starts)
    return HaloPlan(
        devices=devices,
        block=block,
        out_size=out_size,
        out_block=out_block,
        from_left=from_left,
        from_right=from_right,
        left=left,
        right=right,
        tail=tail,
        offsets=offsets,
        length=length,
        padding_mode=padding_mode,
        pads=(top, bottom),
    )


def _rows(x: Array, start: int, stop: int, axis: int) -> Array:
    return jax.lax.slice_in_dim(x, start, stop, axis=axis)


def _zeros_rows(x: Array, n: int, axis: int) -> Array:
    shape = list(x.shape)
    shape[axis] = n
    return jnp.zeros(shape, x.dtype)


def _pad_front(x: Array, n: int, axis: int) -> Array:
    return x if n == 0 else jnp.concatenate([_zeros_rows(x, n, axis), x], axis=axis)


def _pad_back(x: Array, n: int, axis: int) -> Array:
    return x if n == 0 else jnp.concatenate([x, _zeros_rows(x, n, axis)], axis=axis)


def _receive(x: Array, rows: int, plan: HaloPlan, axis: int, axis_name: object, *, left: bool):
    """The `rows` rows next to this device's block, from its left or right neighbour.

    From the left neighbour: its last rows (sent rightwards); from the right: its
    first rows. A device with no neighbour there receives zeros (ring: wraps).
    """
    d, b = plan.devices, plan.block
    sent = _rows(x, b - rows, b, axis) if left else _rows(x, 0, rows, axis)
    shift = 1 if left else -1
    pairs = [(i, i + shift) for i in range(d) if 0 <= i + shift < d]
    if plan.padding_mode == "circular":
        pairs = [(i, (i + shift) % d) for i in range(d)]
    if not pairs:  # one device, no ring: nobody sends
        return jnp.zeros_like(sent)
    return jax.lax.ppermute(sent, axis_name, pairs)


def _edge_halo(x: Array, plan: HaloPlan, axis: int, *, left: bool) -> Array:
    """The left (right) halo of the first (last) device: the image's padded border.

    Halo row j on the left is image row j - plan.left (negative), on the right
    row size + j. Only the `pads` rows nearest the image are ever read; the rest
    take any in-range row.
    """
    b = plan.block
    n = plan.left if left else plan.right
    if plan.padding_mode == "zeros":
        return _zeros_rows(x, n, axis)
    if plan.padding_mode == "replicate":
        index = np.full(n, 0 if left else b - 1)
    elif left:  # reflect: row -k is row k
        index = np.minimum(np.arange(n, 0, -1), b - 1)
    else:  # reflect: row size - 1 + k is row size - 1 - k
        index = np.maximum(b - 2 - np.arange(n), 0)
    return jnp.take(x, jnp.asarray(index, jnp.int32), axis=axis)


def extend_with_halo(x: Array, plan: HaloPlan, *, axis: int, axis_name: object) -> Array:
    """This device's input window: its block, the halo rows around it, sliced to its rows.

    Runs inside jax.shard_map. x: this device's block, plan.block rows on `axis`;
    returns plan.length rows on `axis`, which a 'VALID' convolution along this axis
    turns into exactly plan.out_block output rows.

        # x_block: f[..., B, ...]  ->  f[..., (mb - 1) * stride + window, ...]
    """
    index = jax.lax.axis_index(axis_name)
    parts = []
    edge_fill = plan.padding_mode in ("reflect", "replicate")
    if plan.left:
        halo = _pad_front(
            _receive(x, plan.from_left, plan, axis, axis_name, left=True)
            if plan.from_left
            else _zeros_rows(x, 0, axis),
            plan.left - plan.from_left,
            axis,
        )
        if edge_fill:
            halo = jnp.where(index == 0, _edge_halo(x, plan, axis, left=True), halo)
        parts.append(halo)
    parts.append(x)
    if plan.right:
        halo = _pad_back(
            _receive(x, plan.from_right, plan, axis, axis_name, left=False)
            if plan.from_right
            else _zeros_rows(x, 0, axis),
            plan.right - plan.from_right,
            axis,
        )
        if edge_fill:
            last = index == plan.devices - 1
            halo = jnp.where(last, _edge_halo(x, plan, axis, left=False), halo)
        parts.append(halo)
    buffer = _pad_back(jnp.concatenate(parts, axis=axis) if len(parts) > 1 else x, plan.tail, axis)
    if len(set(plan.offsets)) == 1:
        return _rows(buffer, plan.offsets[0], plan.offsets[0] + plan.length, axis)
    start = jnp.asarray(plan.offsets, jnp.int32)[index]
    return jax.lax.dynamic_slice_in_dim(buffer, start, plan.length, axis=axis)


def mask_tail(y: Array, plan: HaloPlan, *, axis: int, axis_name: object) -> Array:
    """Zero the output rows past the image's last (mh), which only exist when D does not divide mh.

    # y_block: f[..., mb, ...], rows d * mb + j of the whole output
    """
    if plan.padded_out == plan.out_size:
        return y
    index = jax.lax.axis_index(axis_name)
    rows = index * plan.out_block + jnp.arange(plan.out_block)
    shape = [1] * y.ndim
    shape[axis] = plan.out_block
    return jnp.where((rows < plan.out_size).reshape(shape), y, jnp.zeros((), y.dtype))
