"""The public surface: the names the later issues and the users rely on."""

import inspect
import pathlib

import jconv


def test_public_names():
    for name in [
        "corr2d",
        "corr2d_multi_in",
        "corr2d_multi_in_out",
        "corr2d_multi_in_out_1x1",
        "conv2d",
        "conv2d_flops",
        "METHODS",
    ]:
        assert hasattr(jconv, name), name
    assert {"auto", "vmap", "taps", "im2col", "xla"} <= set(jconv.METHODS)
    assert jconv.METHODS[0] == "auto"


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
    }


def test_ships_py_typed():
    assert (pathlib.Path(jconv.__file__).parent / "py.typed").exists()
