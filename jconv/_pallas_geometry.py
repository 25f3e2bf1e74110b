"""The geometry of jconv's implicit-GEMM kernels: which pixels each product reads, no backend.

A 2-D convolution in NHWC with a (kh, kw, C/groups, O) kernel is one bilinear
form, ``T(x, w, dy) = <dy, conv(x, w)>``, and every kernel of method='pallas'
computes one of its three partial derivatives as an implicit GEMM:

- 'y' (the forward pass): rows are output pixels (n, oh, ow), columns output
  channels, and the contraction runs over (tap, input channel);
- 'x' (the input gradient): rows are input pixels, columns input channels,
  the contraction over (tap, output channel) of dy; with a stride s > 1 the
  input pixels are split into s_h * s_w phases (ih mod s_h, iw mod s_w), each
  of which sees only the taps that land on it, so no work is spent on the
  zeros a dilated dy would hold;
- 'w' (the kernel gradient): rows are (tap, input channel), columns output
  channels, the contraction over every output pixel (n, oh, ow).

The forward pass and each input-gradient phase are the same computation,
described per spatial axis by an `AxisPhase`: output position a of the phase
is written at ``out_start + a * out_step`` and, for its tap u, reads the
input at ``in_start + a * in_step + u * tap_in_step`` (zero outside
[0, in_size): padding is never materialized), with kernel index
``tap_start + u * tap_step``. Everything here is plain integer arithmetic on
Python ints or jnp arrays, so that the same functions run inside a Triton
kernel, in interpret mode, or in a later Mosaic GPU kernel.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PRODUCTS = ("y", "x", "w")


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """One NHWC convolution: x (n, height, width, c), kernel (kh, kw, c // groups, o), zero pads."""

    n: int
    height: int
    width: int
    c: int
    o: int
    kh: int
    kw: int
    groups: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right)), zeros

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def og(self) -> int:
        return self.o // self.groups

    @property
    def out_hw(self) -> tuple[int, int]:
        (t, b), (left, r) = self.pads
        (sh, sw), (dh, dw) = self.stride, self.dilation
        return (
            (self.height + t + b - (self.kh - 1) * dh - 1) // sh + 1,
            (self.width + left + r - (self.kw - 1) * dw - 1) // sw + 1,
        )

    @property
    def depthwise(self) -> bool:
        """One input and one output channel per group: every product is elementwise."""
        return self.groups > 1 and self.cg == 1 and self.og == 1

    @property
    def rollable(self) -> bool:
        """Depthwise at stride and dilation 1: its kernels may roll down the rows (each of
        the three products, the input gradient included, a stride-1 correlation)."""
        return self.depthwise and self.stride == (1, 1) and self.dilation == (1, 1)

    def x_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.height, self.width, self.c)

    def y_shape(self) -> tuple[int, int, int, int]:
        return (self.n, *self.out_hw, self.o)

    def w_shape(self) -> tuple[int, int, int, int]:
        return (self.kh, self.kw, self.cg, self.o)

    def out_shape(self, product: str) -> tuple[int, int, int, int]:
        """Shape of what `product` computes."""
        return {"y": self.y_shape, "x": self.x_shape, "w": self.w_shape}[product]()

    def flops(self) -> int:
        """Multiply-adds times two of one product (all three cost the same)."""
        mh, mw = self.out_hw
        return 2 * self.n * mh * mw * self.o * self.cg * self.kh * self.kw


@dataclasses.dataclass(frozen=True)
class AxisPhase:
    """How one spatial axis of a pixel-major product maps its outputs to its inputs."""

    count: int  # output positions a in this phase
    out_start: int  # written at out_start + a * out_step
    out_step: int
    taps: int  # taps u in [0, taps)
    tap_start: int  # kernel index of tap u: tap_start + u * tap_step
    tap_step: int
    in_start: int  # input read: in_start + a * in_step + u * tap_in_step
    in_step: int
    tap_in_step: int
    in_size: int  # inputs outside [0, in_size) are zeros


def forward_phase(size: int, out: int, k: int, s: int, d: int, pad_lo: int) -> AxisPhase:
    """The forward pass along one axis: y[a] = sum_i x[a * s + i * d - pad_lo] w[i]."""
    return AxisPhase(out, 0, 1, k, 0, 1, -pad_lo, s, d, size)


def input_grad_phases(size: int, out: int, k: int, s: int, d: int, pad_lo: int) -> list[AxisPhase]:
    """The input gradient along one axis, one phase per residue of the input position mod s.

    x[r] feeds y[a] through tap i when r = a * s + i * d - pad_lo, so input
    position r = ph + s * b receives dy[(ph + pad_lo - i * d) / s + b] w[i] from
    exactly the taps with (ph + pad_lo - i * d) divisible by s: every
    s / gcd(s, d)-th tap, starting from the first such i (none: the phase is zero).
    """
    g = math.gcd(s, d)
    step = s // g
    phases = []
    for ph in range(min(s, size)):
        count = len(range(ph, size, s))
        first = next((i for i in range(min(step, k)) if (ph + pad_lo - i * d) % s == 0), None)
        if first is None:
            phases.append(AxisPhase(count, ph, s, 0, 0, step, 0, 1, 0, out))
            continue
        taps = len(range(first, k, step))
        in_start = (ph + pad_lo - first * d) // s
        phases.append(AxisPhase(count, ph, s, taps, first, step, in_start, 1, -(d // g), out))
    return phases


@dataclasses.dataclass(frozen=True)
class PixelProblem:
    """A pixel-major product ('y', or one phase of 'x') of one geometry.

    The input image is (n, in_h, in_w, groups * k_per_group) flattened to rows,
    the output (n, out_h, out_w, groups * cols_per_group) likewise; the kernel
    is the geometry's (kh * kw * cg, o) matrix, read as (k, cols) for 'y' and
    transposed for 'x'.
    """

    product: str  # 'y' or 'x'
    geometry: ConvGeometry
    phase_h: AxisPhase  # along the height
    phase_w: AxisPhase  # along the width

    @property
    def in_hw(self) -> tuple[int, int]:
        return self.phase_h.in_size, self.phase_w.in_size

    @property
    def out_hw(self) -> tuple[int, int]:
        g = self.geometry
        return g.out_hw if self.product == "y" else (g.height, g.width)

    @property
    def k_per_group(self) -> int:
        """Contracted channels per group: C/groups for 'y', O/groups for 'x'."""
        g = self.geometry
        return g.cg if self.product == "y" else g.og

    @property
    def cols_per_group(self) -> int:
        g = self.geometry
        return g.og if self.product == "y" else g.cg

    @property
    def rows(self) -> int:
        """Output pixels this phase computes: the GEMM's M."""
        return self.geometry.n * self.phase_h.count * self.phase_w.count

    @property
    def taps(self) -> int:
        return self.phase_h.taps * self.phase_w.taps


def pixel_problems(geometry: ConvGeometry, product: str) -> list[PixelProblem]:
    """The forward pass as one problem, or the input gradient as one per stride phase."""
    g = geometry
    (mh, mw), (sh, sw), (dh, dw) = g.out_hw, g.stride, g.dilation
    (top, _), (left, _) = g.pads
    if product == "y":
        return [
            PixelProblem(
                "y",
                g,
                forward_phase(g.height, mh, g.kh, sh, dh, top),
                forward_phase(g.width, mw, g.kw, sw, dw, left),
            )
        ]
    hs = input_grad_phases(g.height, mh, g.kh, sh, dh, top)
    ws = input_grad_phases(g.width, mw, g.kw, sw, dw, left)
    return [PixelProblem("x", g, ph, pw) for ph in hs for pw in ws]


# --- index arithmetic used inside kernels (Python ints or jnp int arrays alike) ---


def divmod_nonneg(a: Any, b: int) -> tuple[Any, Any]:
    """(a // b, a % b) for a >= 0, as one truncating division (no floor corrections)."""
    if isinstance(a, int):
        return divmod(a, b)
    divisor = np.asarray(b, a.dtype)
    return jax.lax.div(a, divisor), jax.lax.rem(a, divisor)


def split_pixel(m: Any, count_h: int, count_w: int) -> tuple[Any, Any, Any]:
    """Flat pixel index m over (n, count_h, count_w) -> (n, a, b)."""
    n, r = divmod_nonneg(m, count_h * count_w)
    return (n, *divmod_nonneg(r, count_w))


def split_contraction(k: Any, taps_w: int, per_tap: int) -> tuple[Any, Any, Any]:
    """Flat contraction index k over (u_h, u_w, channel) -> (u_h, u_w, channel)."""
    t, ch = divmod_nonneg(k, per_tap)
    return (*divmod_nonneg(t, taps_w), ch)


def phase_input(phase: AxisPhase, a: Any, u: Any) -> tuple[Any, Any]:
    """Input position read by output position a through tap u, and whether it is inside."""
    pos = phase.in_start + a * phase.in_step + u * phase.tap_in_step
    return pos, (pos >= 0) & (pos < phase.in_size)


def phase_output(phase: AxisPhase, a: Any) -> Any:
    return phase.out_start + a * phase.out_step


def phase_tap(phase: AxisPhase, u: Any) -> Any:
    """Kernel index (along this axis) of tap u."""
    return phase.tap_start + u * phase.tap_step


def image_row(n: Any, r: Any, c: Any, hw: tuple[int, int]) -> Any:
    """Row of pixel (n, r, c) in an (N, H, W, C) image flattened to (N * H * W, C)."""
    return (n * hw[0] + r) * hw[1] + c


def kernel_row(i: Any, j: Any, ch: Any, geometry: ConvGeometry) -> Any:
    """Row of (i, j, ch) in the (kh, kw, cg, o) kernel flattened to (kh * kw * cg, o)."""
    return (i * geometry.kw + j) * geometry.cg + ch


def masked_index(index: Any, valid: Any, out_of_range: int) -> Any:
    """index where valid, else a row past the end, where a masked store may land safely.

    Interpret mode writes masked lanes back with the value it read there; a
    lane sent past the end is dropped instead, so it never races a valid lane.
    """
    return jnp.where(valid, index, out_of_range)
