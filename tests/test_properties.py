"""Property-based tests: random valid configurations, every method against lax."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jconv
from tests.reference import assert_close, conv_lax, explicit_pads, to_nhwc

# 'pallas' (interpret mode here, a second or more per compile) is tested in test_pallas.py.
METHODS = [m for m in jconv.METHODS if m != "pallas"]


@st.composite
def conv_problems(draw):
    """A valid conv2d problem: shapes, arguments and a method."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    mode = draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"]))
    h = draw(st.integers((kh - 1) * dilation[0] + 1, 10))
    w = draw(st.integers((kw - 1) * dilation[1] + 1, 10))
    if mode == "zeros" and draw(st.booleans()):
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER"]))
    else:
        pad = st.integers(0, 3)
        padding = ((draw(pad), draw(pad)), (draw(pad), draw(pad)))
        if mode in ("reflect", "circular"):  # at most n - 1 (reflect) or n (circular) wide
            most = (h - 1, w - 1) if mode == "reflect" else (h, w)
            padding = tuple((min(a, n), min(b, n)) for (a, b), n in zip(padding, most))
    return {
        "x_shape": (draw(st.integers(1, 2)), groups * cg, h, w),
        "k_shape": (groups * og, cg, kh, kw),
        "kwargs": {
            "stride": stride,
            "dilation": dilation,
            "groups": groups,
            "padding": padding,
            "padding_mode": mode,
        },
        "layout": draw(st.sampled_from(["NCHW", "NHWC"])),
        "method": draw(st.sampled_from(METHODS)),
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_problems())
def test_random_configurations_match_lax(problem):
    rng = np.random.default_rng(problem["seed"])
    x = rng.standard_normal(problem["x_shape"], np.float32)
    w = rng.standard_normal(problem["k_shape"], np.float32)
    kwargs, layout = problem["kwargs"], problem["layout"]
    if layout == "NHWC":
        x, w = to_nhwc(x, w)
    y = jconv.conv2d(x, w, layout=layout, method=problem["method"], precision="highest", **kwargs)
    ref_kwargs = dict(kwargs)
    if kwargs["padding_mode"] != "zeros" and isinstance(kwargs["padding"], str):
        ref_kwargs["padding"] = explicit_pads(kwargs["padding"])
    assert_close(y, conv_lax(x, w, layout=layout, **ref_kwargs))


@settings(max_examples=6, deadline=None)
@given(conv_problems())
def test_linearity_in_x(problem):
    """conv(a x1 + x2) = a conv(x1) + conv(x2) for zero padding; any mode is linear in x."""
    rng = np.random.default_rng(problem["seed"])
    x1 = rng.standard_normal(problem["x_shape"], np.float32)
    x2 = rng.standard_normal(problem["x_shape"], np.float32)
    w = rng.standard_normal(problem["k_shape"], np.float32)
    conv = lambda x: jconv.conv2d(
        x, w, method=problem["method"], precision="highest", **problem["kwargs"]
    )
    assert_close(conv(2.5 * x1 + x2), 2.5 * conv(x1) + conv(x2), jnp.float32)
