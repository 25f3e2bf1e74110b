"""Layouts, named once and used everywhere.

jconv accepts two layouts, each pairing an activation layout with a kernel one:

- 'NCHW': x (N, C, H, W), kernel (O, C/groups, kh, kw): the lesson's and PyTorch's order.
- 'NHWC': x (N, H, W, C), kernel (kh, kw, C/groups, O): Flax's order.

Internally every lowering receives the kernel as OIHW (the lesson's W), and x
batched in the user's layout, so that activations are never transposed just
to suit a lowering.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jconv._typing import Array

LAYOUTS = ("NCHW", "NHWC")


class LayoutInfo(NamedTuple):
    kernel: str  # kernel layout string, as lax spells it
    channel_axis: int  # channel axis of a batched x
    spatial_axes: tuple[int, int]  # (H, W) axes of a batched x
    kernel_to_oihw: tuple[int, int, int, int]  # transpose taking the kernel to OIHW


LAYOUT_INFO = {
    "NCHW": LayoutInfo("OIHW", 1, (2, 3), (0, 1, 2, 3)),
    "NHWC": LayoutInfo("HWIO", 3, (1, 2), (3, 2, 0, 1)),
}


def relayout(a: Array, src: str, dst: str) -> Array:
    """A batched activation in layout src, as layout dst (a itself where they agree).

    For the lowerings that compute in one layout whatever the user's (each says why).
    """
    if src == dst:
        return a
    return a.transpose((0, 2, 3, 1) if dst == "NHWC" else (0, 3, 1, 2))


def batch_mesh_axis(a: Array) -> Any:
    """The mesh axis (or axes) that axis 0 of a, its batch, is split along in JAX's
    explicit sharding mode; None where it is not split (or no mesh is explicit).

    A batch split that way cannot be sliced, reshaped or looped over as one array
    would be: the lowerings that do such things ask here first.
    """
    spec = getattr(jax.typeof(a).sharding, "spec", None)
    return spec[0] if spec else None


def transposed_kernel(kernel: Array, groups: int, layout: str) -> Array:
    """A forward convolution's kernel -> conv2d's kernel for its transpose, in `layout`'s order.

    'NCHW': (C, O/groups, kh, kw) -> (O, C/groups, kh, kw); 'NHWC':
    (kh, kw, O/groups, C) -> (kh, kw, C/groups, O); both spatially flipped. C is
    the transposed convolution's input channels (the forward one's output
    channels), split into groups, each group's block of the swapped axes
    kept together. In NCHW it is also the kernel that correlates a convolution's output
    gradient into its input gradient (jconv/_method_xla_eigen.py).
    """
    if layout == "NCHW":
        c, og, kh, kw = kernel.shape
        k = kernel.reshape(groups, c // groups, og, kh, kw).transpose(0, 2, 1, 3, 4)
        return k.reshape(groups * og, c // groups, kh, kw)[:, :, ::-1, ::-1]
    kh, kw, og, c = kernel.shape
    k = kernel.reshape(kh, kw, og, groups, c // groups).transpose(0, 1, 4, 3, 2)
    return k.reshape(kh, kw, c // groups, groups * og)[::-1, ::-1]
