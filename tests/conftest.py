"""Test configuration, set once before JAX starts its backend.

8 simulated CPU devices, so that the sharding tests see a real mesh on any
machine; everything else runs on device 0.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax

jax.config.update("jax_num_cpu_devices", 8)
