"""Test configuration, set once before JAX starts its backend.

8 simulated CPU devices, so that the sharding tests see a real mesh on any
machine. On a machine with a GPU (`JAX_PLATFORMS=cuda,cpu python -m pytest`)
the numerical tests run on the GPU, JAX's default device, and the sharding
tests on these 8 CPU devices: they build their meshes from tests/_cpu.py and
ask for the `on_cpu` fixture. Without a GPU, `python -m pytest -p tests.tf32_sim`
rounds default-precision float32 products as a GPU's TF32 does (tests/tf32_sim.py),
to find a tolerance that would fail there.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture
def on_cpu():
    """Run the test on the CPU: arrays it creates and computations it runs without a
    mesh land on the first CPU device (the default device otherwise, a GPU if any)."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield
