"""jconv: multi-channel 2-D convolution built from pure JAX functions.

Y_o = sum_i X_i ⋆ W_(o,i)      X: (ci, nh, nw)   W: (co, ci, kh, kw)   Y: (co, mh, mw)

The lesson's functions (corr2d and the three that build on it), conv2d (the
same construction with everything a layer needs) and its METHODS,
conv_transpose2d (the transposed convolution, conv2d with input dilation) and
conv2d_flops; the Flax layers in jconv.nnx and jconv.linen; splitting over
devices and data-parallel training in jconv.sharding.
"""

import importlib.metadata as _metadata

from jconv import linen as linen
from jconv import nnx as nnx
from jconv import sharding as sharding
from jconv._conv2d import METHODS as METHODS
from jconv._conv2d import conv2d as conv2d
from jconv._conv_transpose import conv_transpose2d as conv_transpose2d
from jconv._cost import conv2d_flops as conv2d_flops
from jconv._lesson import corr2d as corr2d
from jconv._lesson import corr2d_multi_in as corr2d_multi_in
from jconv._lesson import corr2d_multi_in_out as corr2d_multi_in_out
from jconv._lesson import corr2d_multi_in_out_1x1 as corr2d_multi_in_out_1x1

try:
    __version__ = _metadata.version("jconv")
except _metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "unknown"
