"""jconv.conv_transpose2d: torch's semantics against a NumPy scatter loop, lax's against
lax.conv_transpose; gradients, jit and vmap; bad arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from tests.reference import assert_close, conv_transpose_numpy, to_nhwc

# (x shape NCHW, torch's kernel shape (C, O/groups, kh, kw), conv_transpose2d kwargs)
CASES = [
    ((2, 4, 5, 5), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 6, 4, 3), (6, 2, 4, 4), dict(stride=2, padding=1, groups=3)),  # DCGAN's, grouped
    (
        (2, 2, 3, 4),
        (2, 3, 2, 3),
        dict(stride=(3, 2), padding=((0, 1), (2, 0)), dilation=(1, 2), output_padding=(2, 1)),
    ),
    ((1, 3, 6, 6), (3, 2, 3, 3), dict(padding=3)),  # padding beyond the window: a crop
    ((2, 2, 3, 3), (2, 4, 1, 1), dict(stride=3, dilation=2, output_padding=1)),  # zero phases
    ((3, 4, 4), (3, 2, 2, 2), dict(stride=2)),  # unbatched; U-Net's 2x2, stride 2
]
IDS = ["s2-p1-op1", "dcgan-groups", "mixed", "crop", "1x1-s3", "unbatched-2x2"]
# (method, case index, layout): 'taps' everywhere, 'auto' on three, every other method once.
RUNS = [
    *[("taps", i, "NCHW") for i in range(len(CASES))],
    *[("auto", i, "NHWC") for i in (1, 2, 3)],
    ("vmap", 1, "NCHW"),
    ("im2col", 2, "NHWC"),
    ("banded", 0, "NHWC"),
    ("winograd", 5, "NCHW"),
    ("xla", 3, "NCHW"),
    ("xla", 2, "NHWC"),
]


def make(case, seed=0):
    x_shape, k_shape, _ = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    b = rng.standard_normal(k_shape[1] * case[2].get("groups", 1)).astype(np.float32)
    return x, w, b


def torch_reference(x, w, b, kwargs):
    """The NumPy scatter loop with torch's arguments, plus bias, batched or not as x."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    pads = kwargs.get("padding", 0)
    pads = ((pads, pads),) * 2 if isinstance(pads, int) else tuple(pair(p) for p in pads)
    y = conv_transpose_numpy(
        x if x.ndim == 4 else x[None],
        w,
        stride=pair(kwargs.get("stride", 1)),
        pads=pads,
        output_padding=pair(kwargs.get("output_padding", 0)),
        dilation=pair(kwargs.get("dilation", 1)),
        groups=kwargs.get("groups", 1),
    )
    y = y + b[:, None, None]
    return y if x.ndim == 4 else y[0]


@pytest.mark.parametrize(
    "method,case,layout",
    [(m, CASES[i], lay) for m, i, lay in RUNS],
    ids=[f"{m}-{IDS[i]}-{lay}" for m, i, lay in RUNS],
)
def test_matches_torch_semantics(method, case, layout):
    x, w, b = make(case)
    expected = torch_reference(x, w, b, case[2])
    if layout == "NHWC":
        x, w = to_nhwc(x, w)
        expected = np.moveaxis(expected, -3, -1)
    y = jconv.conv_transpose2d(
        x, w, b, layout=layout, method=method, precision="highest", **case[2]
    )
    assert y.shape == expected.shape and y.dtype == np.float32
    assert_close(y, expected)


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((1, 2), (0, 3))])
@pytest.mark.parametrize("transpose_kernel", [True, False])
def test_matches_lax_conv_transpose(padding, transpose_kernel):
    """lax.conv_transpose's 'SAME' and 'VALID', and with transpose_kernel=False its kernel as
    is; explicit amounts are the forward convolution's (lax's use_consistent_padding)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)  # NHWC
    w = rng.standard_normal((3, 4, 2, 3) if transpose_kernel else (3, 4, 3, 2)).astype(np.float32)
    strides, dilation = (2, 3), (1, 2)
    lax_padding = padding
    if not isinstance(padding, str):  # the forward convolution's -> the dilated input's
        window = [(k - 1) * d + 1 for k, d in zip(w.shape[:2], dilation, strict=True)]
        lax_padding = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(window, padding)]
    expected = jax.lax.conv_transpose(
        x,
        w,
        strides,
        lax_padding,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=transpose_kernel,
        precision="highest",
    )
    y = jconv.conv_transpose2d(
        x,
        w,
        stride=strides,
        padding=padding,
        dilation=dilation,
        layout="NHWC",
        transpose_kernel=transpose_kernel,
        precision="highest",
    )
    assert y.shape == expected.shape
    assert_close(y, expected)


def test_gradients_jit_and_vmap_match_lax():
    """Gradients of x, the kernel and the bias, under jit and vmap, against the same
    transposed convolution written with lax (the torch kernel turned by hand)."""
    case = CASES[1]
    x, w, b = make(case, seed=2)
    kw = case[2]

    def ref(x, w, b):
        k = w.reshape(3, 2, 2, 4, 4).transpose(0, 2, 1, 3, 4).reshape(6, 2, 4, 4)[..., ::-1, ::-1]
        y = jax.lax.conv_general_dilated(
            x, k, (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2), feature_group_count=3,
            precision="highest",
        )  # fmt: skip
        return y + b[:, None, None]

    mine = lambda x, w, b: jconv.conv_transpose2d(x, w, b, method="taps", precision="highest", **kw)
    ct = np.random.default_rng(3).standard_normal(ref(x, w, b).shape).astype(np.float32)
    got = jax.jit(jax.grad(lambda *a: jnp.vdot(mine(*a), ct), (0, 1, 2)))(x, w, b)
    expected = jax.grad(lambda *a: jnp.vdot(ref(*a), ct), (0, 1, 2))(x, w, b)
    jax.tree.map(assert_close, got, expected)
    per_sample = jax.jit(jax.vmap(lambda x: mine(x, w, b)))(x[:, None])
    assert_close(per_sample[:, 0], ref(x, w, b))


def test_inverts_conv2d_shapes():
    """torch's padding keeps the transposed convolution the inverse of conv2d's shape change:
    output_padding picks which of the inputs a stride-2 conv maps to the same size."""
    w = jax.ShapeDtypeStruct((3, 5, 3, 3), np.float32)
    for h in (8, 9):
        x = jax.ShapeDtypeStruct((1, 5, h, h), np.float32)
        y = jax.eval_shape(lambda x, w: jconv.conv2d(x, w, stride=2, padding=1), x, w)
        back = jax.eval_shape(
            lambda y, w, h=h: jconv.conv_transpose2d(
                y, w, stride=2, padding=1, output_padding=1 - h % 2
            ),
            y,
            w,
        )
        assert y.shape == (1, 3, 4 + h % 2, 4 + h % 2) and back.shape == x.shape


X = np.ones((1, 4, 5, 5), np.float32)
W = np.ones((4, 3, 3, 3), np.float32)
BAD = [
    (dict(stride=2, output_padding=2), ValueError, r"output_padding \(2, 2\) .* smaller than"),
    (dict(output_padding=-1), ValueError, "output_padding must be at least 0"),
    (dict(padding=-1), ValueError, "padding must not be negative"),
    (dict(padding="SAME_LOWER"), ValueError, "'SAME', 'VALID' .*'SAME_LOWER'"),
    (dict(padding=4), ValueError, "would be empty"),
    (dict(groups=3), ValueError, "divisible by groups=3"),
    (dict(transpose_kernel=1), TypeError, "transpose_kernel must be a bool"),
    (dict(layout="CHWN"), ValueError, "layout must be one of"),
    (dict(stride=0), ValueError, "stride must be at least 1"),
    (dict(method="fft"), ValueError, "method must be one of"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD, ids=[b[2][:25] for b in BAD])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        jconv.conv_transpose2d(X, W, **kwargs)


def test_kernel_channels_checked():
    with pytest.raises(ValueError, match=r"its C that of x \(4, .*kernel shape \(3, 3, 3, 3\)"):
        jconv.conv_transpose2d(X, W[:3])
