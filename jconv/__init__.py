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
from jconv import linen as linen
from jconv import nnx as nnx
from jconv._cost import CommBytes as CommBytes
from jconv._cost import sharded_conv2d_comm_bytes as sharded_conv2d_comm_bytes
from jconv._shard_blocks import STRATEGIES as STRATEGIES
from jconv._shard_blocks import conv2d_batch_block as conv2d_batch_block
from jconv._shard_blocks import conv2d_block as conv2d_block
from jconv._shard_blocks import conv2d_in_channels_block as conv2d_in_channels_block
from jconv._shard_blocks import conv2d_out_channels_block as conv2d_out_channels_block
from jconv._shard_blocks import conv2d_spatial_block as conv2d_spatial_block
from jconv._shard_blocks import conv_pair_block as conv_pair_block
from jconv._shard_hlo import collectives_in_hlo as collectives_in_hlo
from jconv._shard_hlo import count_collectives as count_collectives
from jconv._shard_train import data_parallel_step as data_parallel_step
from jconv._shard_train import pmap_data_parallel_step as pmap_data_parallel_step
from jconv._shard_train import replicate as replicate
from jconv._shard_train import split_batch as split_batch
from jconv._sharding import shard_inputs as shard_inputs
from jconv._sharding import sharded_conv2d as sharded_conv2d
from jconv._sharding import sharded_conv_pair as sharded_conv_pair
