"""The README's Python examples run as written (on the 8 simulated devices of conftest)."""

from __future__ import annotations

import pathlib
import re

import jax
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    if "make_mesh" in BLOCKS[index] and jax.device_count() < 8:
        pytest.skip(
            "the sharding example builds its meshes from jax.devices(), written for 8 "
            f"devices; the default backend here ({jax.default_backend()}) has "
            f"{jax.device_count()} (tests/test_sharding.py runs the same on 8 CPU devices)"
        )
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), {})
