"""The public surface: exactly these names, each the object its private module defines.

A name added to or dropped from jconv, jconv.sharding, jconv.nnx or jconv.linen
fails here until the lists below say so: the surface changes on purpose only.
"""

import importlib
import importlib.metadata
import inspect
import pathlib
import types

import pytest

import jconv

TOP_LEVEL = {
    "corr2d": "jconv._lesson",
    "corr2d_multi_in": "jconv._lesson",
    "corr2d_multi_in_out": "jconv._lesson",
    "corr2d_multi_in_out_1x1": "jconv._lesson",
    "conv2d": "jconv._conv2d",
    "METHODS": "jconv._conv2d",
    "conv_transpose2d": "jconv._conv_transpose",
    "conv2d_flops": "jconv._cost",
}
SUBMODULES = ("nnx", "linen", "sharding")
SHARDING = {
    "sharded_conv2d": "jconv._sharding",
    "sharded_conv_pair": "jconv._sharding",
    "shard_inputs": "jconv._sharding",
    "STRATEGIES": "jconv._shard_blocks",
    "conv2d_block": "jconv._shard_blocks",
    "conv2d_batch_block": "jconv._shard_blocks",
    "conv2d_out_channels_block": "jconv._shard_blocks",
    "conv2d_in_channels_block": "jconv._shard_blocks",
    "conv2d_spatial_block": "jconv._shard_blocks",
    "conv_pair_block": "jconv._shard_blocks",
    "data_parallel_step": "jconv._shard_train",
    "pmap_data_parallel_step": "jconv._shard_train",
    "replicate": "jconv._shard_train",
    "split_batch": "jconv._shard_train",
    "CommBytes": "jconv._cost",
    "sharded_conv2d_comm_bytes": "jconv._cost",
    "Collective": "jconv._shard_hlo",
    "collectives_in_hlo": "jconv._shard_hlo",
    "count_collectives": "jconv._shard_hlo",
}


def public_names(module: types.ModuleType) -> set[str]:
    return {name for name in vars(module) if not name.startswith("_")}


@pytest.mark.parametrize(
    "module,expected",
    [(jconv, {**TOP_LEVEL, **dict.fromkeys(SUBMODULES)}), (jconv.sharding, SHARDING)],
    ids=["jconv", "jconv.sharding"],
)
def test_exactly_the_public_names(module, expected):
    assert public_names(module) == set(expected)
    for name, home in expected.items():
        if home is not None:  # a re-export is the defining module's object, not a copy
            assert getattr(module, name) is getattr(importlib.import_module(home), name), name


@pytest.mark.parametrize("name", ["nnx", "linen"])
def test_flax_modules_export_conv(name):
    module = getattr(jconv, name)
    assert isinstance(module, types.ModuleType) and module.__all__ == ["Conv", "ConvTranspose"]
    assert module.Conv.__module__ == module.ConvTranspose.__module__ == f"jconv.{name}"


def test_methods_and_strategies():
    assert {"auto", "vmap", "taps", "im2col", "banded", "winograd", "xla", "pallas"} == set(
        jconv.METHODS
    )
    assert jconv.METHODS[0] == "auto"
    assert jconv.sharding.STRATEGIES == ("batch", "out_channels", "in_channels", "spatial")


def test_version_from_package_metadata(monkeypatch):
    assert jconv.__version__ == importlib.metadata.version("jconv")
    assert jconv.__version__[0].isdigit()

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    try:  # imported from a source tree: no version is made up
        importlib.reload(jconv)
        assert jconv.__version__ == "unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(jconv)  # the submodules are cached: the same objects are re-exported
    assert jconv.__version__ == importlib.metadata.version("jconv")
    assert jconv.conv2d is importlib.import_module("jconv._conv2d").conv2d


def test_conv2d_signature():
    params = inspect.signature(jconv.conv2d).parameters
    assert list(params)[:3] == ["x", "kernel", "bias"]
    defaults = {k: p.default for k, p in params.items() if p.kind == p.KEYWORD_ONLY}
    assert defaults == {
        "stride": 1,
        "padding": "VALID",
        "dilation": 1,
        "groups": 1,
        "padding_mode": "zeros",
        "layout": "NCHW",
        "precision": None,
        "preferred_element_type": None,
        "method": "auto",
        "input_dilation": 1,
        "out_sharding": None,
    }


def test_conv_transpose2d_signature():
    params = inspect.signature(jconv.conv_transpose2d).parameters
    assert list(params)[:3] == ["x", "kernel", "bias"]
    defaults = {k: p.default for k, p in params.items() if p.kind == p.KEYWORD_ONLY}
    assert defaults == {
        "stride": 1,
        "padding": 0,
        "output_padding": 0,
        "dilation": 1,
        "groups": 1,
        "layout": "NCHW",
        "transpose_kernel": True,
        "precision": None,
        "preferred_element_type": None,
        "method": "auto",
        "out_sharding": None,
    }


def test_ships_py_typed():
    assert (pathlib.Path(jconv.__file__).parent / "py.typed").exists()
