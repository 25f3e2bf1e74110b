"""Test configuration, set once before JAX starts its backend.

8 simulated CPU devices, so that the sharding tests see a real mesh on any
machine. On a machine with a GPU (`JAX_PLATFORMS=cuda,cpu python -m pytest`)
the numerical tests run on the GPU, JAX's default device, and the sharding
tests on these 8 CPU devices: they build their meshes from tests/_cpu.py and
ask for the `on_cpu` fixture. Without a GPU, `python -m pytest -p tests.tf32_sim`
rounds default-precision float32 products as a GPU's TF32 does (tests/tf32_sim.py),
to find a tolerance that would fail there.

Large parameter products run a deterministic sample of their cases
(tests/_helpers.py, `sample_product`); `python -m pytest --full-product` (or the
environment variable JCONV_FULL_PRODUCT=1) runs every case.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests' programs are small and each runs once or twice: compiling them is most of
# the suite's time. Without XLA's LLVM optimizations (its HLO passes still run) the CPU
# compiles them in about two thirds of the time; the machine code is slower, and what
# it computes is compared with tolerances as before. An XLA_FLAGS that sets the level
# itself is left alone.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()
# pytest-xdist runs the suite in two processes (pyproject.toml): on a GPU machine each
# must not take most of the GPU's memory for itself, as JAX does by default.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import hypothesis
import jax
import pytest

from tests._helpers import FULL_PRODUCT_ENV

jax.config.update("jax_num_cpu_devices", 8)

# The property-based tests draw the same examples on every run, as the parameter
# products run a fixed sample: a draw that finds something (lax on a CPU skipping a
# border's 0 * Inf, session 9) would otherwise fail whichever change CI happens to
# test. JCONV_HYPOTHESIS=explore draws fresh examples each run, to look for more.
hypothesis.settings.register_profile("fixed", derandomize=True)
hypothesis.settings.register_profile("explore", derandomize=False)
hypothesis.settings.load_profile(os.environ.get("JCONV_HYPOTHESIS", "fixed"))


def pytest_addoption(parser):
    parser.addoption(
        "--full-product",
        action="store_true",
        help="run every case of the sampled parameter products (tests/_helpers.py)",
    )


def pytest_configure(config):
    # before the test modules are imported: their parametrize marks read it
    if config.getoption("full_product"):
        os.environ[FULL_PRODUCT_ENV] = "1"


@pytest.fixture
def on_cpu():
    """Run the test on the CPU: arrays it creates and computations it runs without a
    mesh land on the first CPU device (the default device otherwise, a GPU if any)."""
    with jax.default_device(jax.devices("cpu")[0]):
        yield
