"""jconv.sharding: jconv.conv2d split over the devices of a mesh, and data-parallel training.

The construction Y_o = sum_i X_i ⋆ W_(o,i) has four axes to split a
convolution along (STRATEGIES: 'batch', 'out_channels', 'in_channels',
'spatial'). This namespace gathers what uses them, so that the top level of
jconv stays the lesson's functions and conv2d:

- on whole (global) arrays: `sharded_conv2d`, `sharded_conv_pair` (two
  convolutions, one collective), `shard_inputs` (placing x and the kernel as a
  strategy splits them);
- inside your own jax.shard_map, per device: `conv2d_block` and its
  one-strategy forms `conv2d_batch_block`, `conv2d_out_channels_block`,
  `conv2d_in_channels_block`, `conv2d_spatial_block`, and `conv_pair_block`;
- training: `data_parallel_step` (shard_map), `pmap_data_parallel_step` with
  `replicate` and `split_batch` (jax.pmap);
- communication: `sharded_conv2d_comm_bytes` (the cost model, a `CommBytes`),
  and `collectives_in_hlo` / `count_collectives`, which read the collectives
  out of a compiled program's HLO text (`jax.jit(f).lower(...).compile().as_text()`)
  to check the model against what XLA really emits. They parse text whose
  format XLA does not promise to keep: diagnostics, not a stable interface.

    >>> import jax, jconv
    >>> mesh = jax.make_mesh((jax.device_count(),), ("d",))
    >>> x = jax.random.normal(jax.random.key(0), (8, 3, 16, 16))     # N, C, H, W
    >>> w = jax.random.normal(jax.random.key(1), (8, 3, 3, 3))       # O, C, kh, kw
    >>> jconv.sharding.sharded_conv2d(x, w, mesh=mesh, strategy="batch", padding="SAME").shape
    (8, 8, 16, 16)
"""

from jconv._cost import CommBytes as CommBytes
from jconv._cost import sharded_conv2d_comm_bytes as sharded_conv2d_comm_bytes
from jconv._shard_blocks import STRATEGIES as STRATEGIES
from jconv._shard_blocks import conv2d_batch_block as conv2d_batch_block
from jconv._shard_blocks import conv2d_block as conv2d_block
from jconv._shard_blocks import conv2d_in_channels_block as conv2d_in_channels_block
from jconv._shard_blocks import conv2d_out_channels_block as conv2d_out_channels_block
from jconv._shard_blocks import conv2d_spatial_block as conv2d_spatial_block
from jconv._shard_blocks import conv_pair_block as conv_pair_block
from jconv._shard_hlo import Collective as Collective
from jconv._shard_hlo import collectives_in_hlo as collectives_in_hlo
from jconv._shard_hlo import count_collectives as count_collectives
from jconv._shard_train import data_parallel_step as data_parallel_step
from jconv._shard_train import pmap_data_parallel_step as pmap_data_parallel_step
from jconv._shard_train import replicate as replicate
from jconv._shard_train import split_batch as split_batch
from jconv._sharding import shard_inputs as shard_inputs
from jconv._sharding import sharded_conv2d as sharded_conv2d
from jconv._sharding import sharded_conv_pair as sharded_conv_pair
