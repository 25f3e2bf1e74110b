"""'taps' on one input channel per group (jconv/_method_depthwise.py): elementwise products,
its own primitive member for the kernel gradient (a scan down the rows of dy).

Against the NumPy loops of tests/reference.py (forward and both gradients, float64) and
lax at HIGHEST (dtypes), under jit, grad, vmap (of x, and of the kernel, which turns into
more groups), jvp, linear_transpose and second order; non-finite values where the
definition's products put them (no finiteness check runs on this path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jconv
from tests._cpu import (
    assert_split_batch_like_lax,
    needs_8_cpu_devices,
)
from tests._helpers import lowerings_run
from tests.reference import assert_close, conv_lax, conv_numpy, conv_numpy_vjp

# (x shape NCHW, kernel OIHW, keyword arguments): depthwise, a channel multiplier, one
# input channel without groups, stride, dilation, asymmetric and 'SAME' padding
CASES = [
    ((2, 4, 7, 9), (4, 1, 3, 3), {"groups": 4, "padding": "SAME"}),
    ((1, 3, 8, 6), (6, 1, 3, 2), {"groups": 3, "stride": (2, 1), "padding": ((1, 0), (2, 1))}),
    ((2, 5, 9, 9), (5, 1, 3, 3), {"groups": 5, "dilation": (2, 1), "padding": 2}),
    ((3, 1, 6, 7), (4, 1, 2, 3), {"padding": "VALID"}),
    (
        (1, 6, 11, 10),
        (6, 1, 5, 5),
        {"groups": 6, "stride": 2, "dilation": (1, 2), "padding": "SAME"},
    ),
    ((2, 2, 9, 8), (6, 1, 3, 3), {"groups": 2, "stride": (1, 2), "dilation": (2, 1), "padding": 1}),
]
IDS = [
    "3x3-same", "multiplier-strided", "dilated", "one-channel", "5x5-strided-dilated",
    "multiplier-dilated",
]  # fmt: skip


def _arrays(x_shape, k_shape, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(k_shape).astype(dtype)
    return x, w, rng


def _numpy_kwargs(x_shape, k_shape, kwargs):
    spec = jconv._checks.check_conv_args(
        x_shape, k_shape, x_dtype="float32", kernel_dtype="float32", **kwargs
    )
    return dict(stride=spec.stride, dilation=spec.dilation, pads=spec.pads, groups=spec.groups)


# The kernel gradient's scan over blocks of dy: rows and samples a step. "default": what
# these small images get (every row and every sample in one step, or the most rows that
# divide the height within MAX_TERMS); the others force a row, or two rows where the
# output's height is even, and one sample a step.
STEPS = {
    "default": {},
    "one-row-one-sample": {"_row_block": lambda mh, taps, *_: 1, "_sample_block": lambda n, r: 1},
    "two-rows": {"_row_block": lambda mh, taps, *_: 2 if mh % 2 == 0 else 1},
    "one-sample": {"_sample_block": lambda n, r: 1},
}


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("x_shape,k_shape,kwargs", CASES, ids=IDS)
def test_value_and_gradients_match_the_numpy_loops(
    x_shape, k_shape, kwargs, layout, step, monkeypatch
):
    from jconv import _method_depthwise

    for name, block in STEPS[step].items():
        monkeypatch.setattr(_method_depthwise, name, block)
    with jax.enable_x64(True):
        x, w, rng = _arrays(x_shape, k_shape, seed=3)
        ref_kwargs = _numpy_kwargs(x_shape, k_shape, kwargs)
        y_ref = conv_numpy(x, w, **ref_kwargs)
        dy = rng.standard_normal(y_ref.shape)
        dx_ref, dw_ref = conv_numpy_vjp(x, w, dy, **ref_kwargs)
        to = (lambda a: a.transpose(0, 2, 3, 1)) if layout == "NHWC" else (lambda a: a)
        w_in = w.transpose(2, 3, 1, 0) if layout == "NHWC" else w
        conv = jax.jit(lambda x, w: jconv.conv2d(x, w, method="taps", layout=layout, **kwargs))
        y, vjp = jax.vjp(conv, to(x), w_in)
        dx, dw = jax.jit(vjp)(to(dy))
        assert_close(y, to(y_ref), jnp.float64)
        assert_close(dx, to(dx_ref), jnp.float64)
        dw_ref = dw_ref.transpose(2, 3, 1, 0) if layout == "NHWC" else dw_ref
        assert_close(dw, dw_ref, jnp.float64)
        assert lowerings_run(conv, to(x), w_in) == {"taps"}  # its own member, not the GEMMs
        # the kernel gradient is a scan down the rows (a while loop)
        grad_w = jax.jit(jax.grad(lambda w: jnp.vdot(conv(to(x), w), to(dy))))
        assert "stablehlo.while" in grad_w.lower(w_in).as_text()


# (x shape NCHW, kernel OIHW, keyword arguments): 2 or 3 input channels per group, the
# forward pass 'auto' runs there with the band's gradients (TAPS_BANDED_GRADIENTS)
FEW_CHANNEL_CASES = [
    ((2, 3, 9, 11), (8, 3, 3, 3), {"padding": "SAME"}),
    ((1, 4, 8, 7), (6, 2, 3, 2), {"groups": 2, "stride": (2, 1), "padding": ((1, 0), (2, 1))}),
    ((2, 6, 9, 9), (3, 2, 3, 3), {"groups": 3, "dilation": (2, 1), "padding": 2}),
]


@pytest.mark.parametrize("x_shape,k_shape,kwargs", FEW_CHANNEL_CASES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_elementwise_forward_on_a_few_channels_per_group(x_shape, k_shape, kwargs, layout, dtype):
    """elementwise_y sums C/groups elementwise products per tap: against the NumPy loop
    (float64), under jit and vmap; in bfloat16 rounded once, from float32 sums."""
    from jconv._method_depthwise import elementwise_y

    with jax.enable_x64(True):
        x, w, _ = _arrays(x_shape, k_shape, seed=9)
        y_ref = conv_numpy(x, w, **_numpy_kwargs(x_shape, k_shape, kwargs))
        k_shape_in = k_shape  # the argument's layout: OIHW for NCHW, HWIO for NHWC
        if layout == "NHWC":
            x, y_ref = x.transpose(0, 2, 3, 1), y_ref.transpose(0, 2, 3, 1)
            k_shape_in = (*k_shape[2:], k_shape[1], k_shape[0])
        spec = jconv._checks.check_conv_args(
            x.shape, k_shape_in, x_dtype=dtype, kernel_dtype=dtype, layout=layout, **kwargs
        )
        x_in, w_in = jnp.asarray(x, dtype), jnp.asarray(w, dtype)  # members take OIHW
        y = jax.jit(lambda x, w: elementwise_y(x, w, spec))(x_in, w_in)
        assert y.dtype == jnp.dtype(dtype)
        assert_close(y, y_ref, jnp.dtype(dtype))
        batched = jax.vmap(lambda x: elementwise_y(x, w_in, spec))(x_in[:, None])
        np.testing.assert_array_equal(np.asarray(batched[:, 0]), np.asarray(y))


@pytest.mark.parametrize("x_shape,k_shape,kwargs", FEW_CHANNEL_CASES)
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("steps", ["default", "one row, one sample"])
def test_grouped_kernel_gradient(x_shape, k_shape, kwargs, layout, steps, monkeypatch):
    """grouped_dw (C/groups depthwise scans under one lax.map, GROUPED_ELEMENTWISE's kernel
    gradient on large images) against the NumPy loop's dw, float64, jitted; and under
    vmap of x and dy (a batch of problems)."""
    from jconv import _method_depthwise
    from jconv._method_depthwise import grouped_dw

    if steps != "default":
        monkeypatch.setattr(_method_depthwise, "_row_block", lambda mh, taps, *_: 1)
        monkeypatch.setattr(_method_depthwise, "_sample_block", lambda n, r: 1)
    with jax.enable_x64(True):
        x, w, rng = _arrays(x_shape, k_shape, seed=12)
        ref_kwargs = _numpy_kwargs(x_shape, k_shape, kwargs)
        dy = rng.standard_normal(conv_numpy(x, w, **ref_kwargs).shape)
        _, dw_ref = conv_numpy_vjp(x, w, dy, **ref_kwargs)
        k_shape_in = k_shape
        if layout == "NHWC":
            x, dy = x.transpose(0, 2, 3, 1), dy.transpose(0, 2, 3, 1)
            k_shape_in = (*k_shape[2:], k_shape[1], k_shape[0])
        spec = jconv._checks.check_conv_args(
            x.shape, k_shape_in, x_dtype="float64", kernel_dtype="float64", layout=layout,
            **kwargs,
        )  # fmt: skip
        dw = jax.jit(lambda x, dy: grouped_dw(x, dy, spec, None))(x, dy)
        assert dw.shape == k_shape  # OIHW
        assert_close(dw, dw_ref)
        batched = jax.vmap(lambda x, dy: grouped_dw(x, dy, spec, None))(x[None], dy[None])
        assert_close(batched[0], dw_ref)


def test_step_blocks_divide_the_batch_and_height_and_fit():
    from jconv._method_depthwise import ACC_ELEMENTS, MAX_TERMS, _row_block, _sample_block

    assert MAX_TERMS // 9 == 8 and _row_block(56, 9) == 8  # the bench's layer, 3x3
    assert _row_block(56, 25) == 2  # 5x5: 2 fit, 2 divide 56
    assert _row_block(54, 9) == 6  # 8 and 7 fit but leave a part
    assert _row_block(13, 9) == 1 and _row_block(7, 9) == 7  # a prime height
    assert _row_block(9, 100) == 1  # more taps than MAX_TERMS: a row a step
    assert _sample_block(4, 56 * 128) == 1  # the bench's layer: one sample's row fills it
    assert _sample_block(256, 24 * 6) == 32  # 56 would fit; 32 is the largest divisor
    assert _sample_block(6, 1) == 6 and _sample_block(8, 10 * ACC_ELEMENTS) == 1


@pytest.mark.usefixtures("on_cpu")  # XLA's CPU backend's fusions
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_a_loss_does_not_materialize_every_window(layout):
    """The value and gradients of a loss on y, compiled for the CPU: temporaries of about
    3 copies of x. When XLA merged the windows' sum into the loss's reduction it held
    kh*kw windows and kh*kw broadcast weights, 18 copies (NCHW before session 7)."""
    n, c, h, w = 4, 32, 64, 64
    x = jnp.ones((n, c, h, w) if layout == "NCHW" else (n, h, w, c))
    k = jnp.ones((c, 1, 3, 3) if layout == "NCHW" else (3, 3, 1, c))
    conv = lambda x, k: jconv.conv2d(x, k, groups=c, padding="SAME", layout=layout, method="taps")
    step = jax.jit(jax.value_and_grad(lambda x, k, ct: jnp.vdot(conv(x, k), ct), (0, 1)))
    temps = step.lower(x, k, x).compile().memory_analysis().temp_size_in_bytes
    assert temps < 6 * x.nbytes, temps / x.nbytes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtypes_against_lax(dtype):
    x_shape, k_shape, kwargs = CASES[1]
    x, w, rng = _arrays(x_shape, k_shape, seed=5, dtype=np.float32)
    x, w = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
    conv = lambda x, w: jconv.conv2d(x, w, method="taps", **kwargs)
    ref = lambda x, w: conv_lax(x, w, **kwargs)
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    y_ref, vjp_ref = jax.vjp(ref, x.astype(jnp.float32), w.astype(jnp.float32))
    assert y.dtype == dtype
    assert_close(y, y_ref, dtype)
    ct = jnp.asarray(rng.standard_normal(y.shape), dtype)
    for got, want in zip(jax.jit(vjp)(ct), vjp_ref(ct.astype(jnp.float32))):
        assert got.dtype == dtype
        assert_close(got, want, dtype)


def test_preferred_element_type_widens_every_member():
    x_shape, k_shape, kwargs = CASES[0]
    x, w, rng = _arrays(x_shape, k_shape, seed=6, dtype=np.float32)
    x, w = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    conv = lambda x, w: jconv.conv2d(
        x, w, method="taps", preferred_element_type=jnp.float32, **kwargs
    )
    y, vjp = jax.vjp(jax.jit(conv), x, w)
    assert y.dtype == jnp.float32
    # the products of bfloat16 values are exact in float32: lax's float32 result on them
    wide = x.astype(jnp.float32), w.astype(jnp.float32)
    y_ref, vjp_ref = jax.vjp(lambda x, w: conv_lax(x, w, **kwargs), *wide)
    assert_close(y, y_ref)
    ct = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for got, want in zip(jax.jit(vjp)(ct), vjp_ref(ct)):  # each rounded to bfloat16 once
        assert got.dtype == jnp.bfloat16
        assert_close(got, want, jnp.bfloat16)


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", [0, 5], ids=[IDS[0], IDS[5]])
@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_batch_split_in_explicit_sharding_mode(case, layout, sampled, monkeypatch):
    """x split along the batch over 8 devices in JAX's explicit sharding mode: y and both
    gradients against lax, y and dx laid out as x. sampled: the kernel gradient's steps
    would take one sample each, which a batch on devices cannot be sliced into: every
    step then takes the whole batch (and its accumulators are laid out as dy's rows)."""
    from jconv import _method_depthwise

    if sampled:
        monkeypatch.setattr(_method_depthwise, "_sample_block", lambda n, r: 1)
    x_shape, k_shape, kwargs = CASES[case]
    x_shape = (8, *x_shape[1:])
    x, w, _ = _arrays(x_shape, k_shape, seed=11, dtype=np.float32)
    to = (lambda a: a.transpose(0, 2, 3, 1)) if layout == "NHWC" else (lambda a: a)
    x, w = to(x), (w.transpose(2, 3, 1, 0) if layout == "NHWC" else w)

    def conv(x, w):
        return jconv.conv2d(x, w, method="taps", layout=layout, **kwargs)

    assert_split_batch_like_lax(conv, x, w, layout=layout, **kwargs)


@pytest.mark.parametrize("x_shape,k_shape,kwargs", [CASES[1], CASES[3]], ids=[IDS[1], IDS[3]])
def test_transformations(x_shape, k_shape, kwargs):
    with jax.enable_x64(True):
        x, w, rng = _arrays(x_shape, k_shape, seed=7)
        conv = lambda x, w: jconv.conv2d(x, w, method="taps", **kwargs)
        ref = lambda x, w: conv_lax(x, w, **kwargs)
        # second order once (the channel multiplier, strided); first order on the other
        order = 2 if kwargs.get("groups", 1) > 1 else 1
        check_grads(conv, (x, w), order=order, modes=["fwd", "rev"])
        # jvp and linear_transpose against lax's
        tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
        _, t = jax.jit(lambda: jax.jvp(conv, (x, w), (tx, tw)))()
        _, t_ref = jax.jvp(ref, (x, w), (tx, tw))
        assert_close(t, t_ref, jnp.float64)
        y = ref(x, w)
        ct = rng.standard_normal(y.shape)
        (dw,) = jax.linear_transpose(lambda w: conv(x, w), w)(ct)
        (dw_ref,) = jax.linear_transpose(lambda w: ref(x, w), w)(ct)
        assert_close(dw, dw_ref, jnp.float64)
        # vmap over the batch, and over kernels (each kernel its own set of groups)
        xs = rng.standard_normal((3, *x.shape))
        assert_close(
            jax.jit(jax.vmap(lambda x: conv(x, w)))(xs),
            jax.vmap(lambda x: ref(x, w))(xs),
            jnp.float64,
        )
        ws = rng.standard_normal((2, *w.shape))
        loss = lambda w: jnp.sum(jax.vmap(lambda w: conv(x, w))(w) ** 2)
        loss_ref = lambda w: jnp.sum(jax.vmap(lambda w: ref(x, w))(w) ** 2)
        assert_close(jax.jit(jax.grad(loss))(ws), jax.grad(loss_ref)(ws), jnp.float64)


@pytest.mark.parametrize("where", ["x", "w"])
@pytest.mark.parametrize("case", [0, 1, 3], ids=[IDS[0], IDS[1], IDS[3]])
def test_non_finite_values_land_where_the_definition_puts_them(where, case):
    """An Inf in x (a corner) or in the kernel: Inf and NaN where the NumPy loops, which
    form exactly the definition's products (zero border included), put them. With a
    channel multiplier the input gradient sums each tap's products over the group's
    outputs first (`_depthwise_dx`), and spreads the sums out with zeros added, never
    multiplied."""
    with jax.enable_x64(True):
        x_shape, k_shape, kwargs = CASES[case]
        x, w, rng = _arrays(x_shape, k_shape, seed=9)
        if where == "x":
            x[0, x_shape[1] - 1, 0, 0] = np.inf
        else:
            w[k_shape[0] // 2, 0, k_shape[2] // 2, 1] = -np.inf
        ref_kwargs = _numpy_kwargs(x_shape, k_shape, kwargs)
        y_ref = conv_numpy(x, w, **ref_kwargs)
        dy = rng.standard_normal(y_ref.shape)
        dx_ref, dw_ref = conv_numpy_vjp(x, w, dy, **ref_kwargs)
        conv = lambda x, w: jconv.conv2d(x, w, method="taps", **kwargs)
        y, vjp = jax.vjp(jax.jit(conv), x, w)
        for got, want in zip((y, *jax.jit(vjp)(dy)), (y_ref, dx_ref, dw_ref)):
            got = np.asarray(got)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
            finite = np.isfinite(want)
            assert_close(got[finite], want[finite], jnp.float64)
