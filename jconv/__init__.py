"""jconv: multi-channel 2-D convolution built from pure JAX functions.

    Y_o = sum_i X_i ⋆ W_(o,i)      X: (ci, nh, nw)   W: (co, ci, kh, kw)   Y: (co, mh, mw)
"""

from jconv._conv2d import METHODS as METHODS
from jconv._conv2d import conv2d as conv2d
from jconv._cost import conv2d_flops as conv2d_flops
from jconv._lesson import corr2d as corr2d
from jconv._lesson import corr2d_multi_in as corr2d_multi_in
from jconv._lesson import corr2d_multi_in_out as corr2d_multi_in_out
from jconv._lesson import corr2d_multi_in_out_1x1 as corr2d_multi_in_out_1x1

__version__ = "0.1.0"
