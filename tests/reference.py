"""Independent references for jconv's tests.

- `conv_numpy`: a plain NumPy loop over output pixels and groups, in float64,
  written from the definition and sharing no code with jconv.
- `conv_lax`: lax.conv_general_dilated at Precision.HIGHEST, with non-zero
  padding modes done as "fill the border with jnp.pad, then 'VALID'".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NP_PAD_MODE = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


def conv_numpy(
    x, w, *, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1, padding_mode="zeros"
):
    """x: (N, C, H, W), w: (O, C/groups, kh, kw), explicit pads -> (N, O, mh, mw), float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    x = np.pad(x, ((0, 0), (0, 0), *pads), mode=NP_PAD_MODE[padding_mode])
    n, _, hp, wp = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = stride, dilation
    mh = (hp - (kh - 1) * dh - 1) // sh + 1
    mw = (wp - (kw - 1) * dw - 1) // sw + 1
    y = np.zeros((n, o, mh, mw))
    with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf is NaN, as intended
        _accumulate(x, w, y, stride, dilation, groups)
    return y


def _accumulate(x, w, y, stride, dilation, groups):
    o, cg, kh, kw = w.shape
    og = o // groups
    (sh, sw), (dh, dw) = stride, dilation
    mh, mw = y.shape[2:]
    for g in range(groups):
        xg = x[:, g * cg : (g + 1) * cg]
        wg = w[g * og : (g + 1) * og]
        for a in range(mh):
            for b in range(mw):
                patch = xg[
                    :,
                    :,
                    a * sh : a * sh + (kh - 1) * dh + 1 : dh,
                    b * sw : b * sw + (kw - 1) * dw + 1 : dw,
                ]
                y[:, g * og : (g + 1) * og, a, b] = np.einsum("nchw,ochw->no", patch, wg)


def conv_lax(
    x,
    w,
    *,
    stride=1,
    padding="VALID",
    dilation=1,
    groups=1,
    padding_mode="zeros",
    layout="NCHW",
    preferred_element_type=None,
):
    """The reference: x and w in `layout`'s own orders (OIHW or HWIO), batched or not."""
    kernel_layout = {"NCHW": "OIHW", "NHWC": "HWIO"}[layout]
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
    dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    if padding_mode != "zeros":
        assert not isinstance(padding, str), "use explicit pads with non-zero modes"
        pads = explicit_pads(padding)
        spatial = (2, 3) if layout == "NCHW" else (1, 2)
        widths = [(0, 0)] * 4
        widths[spatial[0]], widths[spatial[1]] = pads
        x = jnp.pad(
            x,
            widths,
            mode={"circular": "wrap", "reflect": "reflect", "replicate": "edge"}[padding_mode],
        )
        padding = "VALID"
    elif not isinstance(padding, str):
        padding = explicit_pads(padding)
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=(layout, kernel_layout, layout),
        feature_group_count=groups,
        precision=jax.lax.Precision.HIGHEST,
        preferred_element_type=preferred_element_type,
    )
    return y[0] if unbatched else y


def explicit_pads(padding):
    """int, (ph, pw) or ((t, b), (l, r)) -> ((t, b), (l, r))."""
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    a, b = padding
    if isinstance(a, int):
        return ((a, a), (b, b))
    return (tuple(a), tuple(b))


def to_nhwc(x, w):
    """Batched-or-not NCHW x and OIHW w -> NHWC x and HWIO w (NumPy arrays).

    A transposed convolution's (C, O/groups, kh, kw) kernel becomes (kh, kw, O/groups, C).
    """
    return np.moveaxis(np.asarray(x), -3, -1), np.asarray(w).transpose(2, 3, 1, 0)


def tolerance(dtype):
    """(rtol, atol) for comparing a result of this dtype with a float32/64 reference."""
    return {
        jnp.dtype(jnp.float16): (1e-2, 1e-2),
        jnp.dtype(jnp.bfloat16): (2e-2, 5e-2),
        jnp.dtype(jnp.float32): (1e-5, 1e-5),
        jnp.dtype(jnp.float64): (1e-12, 1e-12),
    }[jnp.dtype(dtype)]


def assert_close(actual, expected, dtype=jnp.float32, scale=None):
    """allclose with per-dtype tolerances; atol scales with the reference's magnitude."""
    actual = np.asarray(
        jnp.asarray(actual, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    )
    expected = np.asarray(expected, actual.dtype)
    rtol, atol = tolerance(dtype)
    if scale is None:
        scale = float(np.max(np.abs(expected), initial=0.0)) + 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def conv_numpy_vjp(x, w, dy, *, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1):
    """The gradients (dx, dw) of <conv_numpy(x, w), dy>, zero padding, float64.

    Written from the definition, output position by output position: each dy
    value times the kernel is added to the input window it read, and times that
    window to the kernel. So dx and dw hold exactly the products dy * w and
    x * dy (an Inf or a NaN lands only where such a product has one).
    """
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    xp = np.pad(x, ((0, 0), (0, 0), *pads))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf is NaN, as intended
        _accumulate_vjp(xp, w, dy, dxp, dw, stride, dilation, groups)
    (t, bt), (lf, rt) = pads
    return dxp[:, :, t : dxp.shape[2] - bt, lf : dxp.shape[3] - rt], dw


def _accumulate_vjp(xp, w, dy, dxp, dw, stride, dilation, groups):
    o, cg, kh, kw = w.shape
    og = o // groups
    (sh, sw), (dh, dw_) = stride, dilation
    for g in range(groups):
        ci, oi = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
        for a in range(dy.shape[2]):
            for b in range(dy.shape[3]):
                rows = slice(a * sh, a * sh + (kh - 1) * dh + 1, dh)
                cols = slice(b * sw, b * sw + (kw - 1) * dw_ + 1, dw_)
                d = dy[:, oi, a, b]  # (n, og)
                dw[oi] += np.einsum("no,nchw->ochw", d, xp[:, ci, rows, cols])
                dxp[:, ci, rows, cols] += np.einsum("no,ochw->nchw", d, w[oi])


def conv_transpose_numpy(
    x, w, *, stride=(1, 1), pads=((0, 0), (0, 0)), output_padding=(0, 0), dilation=(1, 1), groups=1
):
    """torch's conv_transpose2d from its definition, as a scatter, in float64.

    x: (N, C, H, W); w: (C, O/groups, kh, kw), the forward convolution's kernel;
    pads: the forward convolution's ((top, bottom), (left, right)). Every input
    pixel (h, w) adds x[n, c, h, w] * w[c, o, i, j] to the output pixel
    (h * sh + i * dh - top, w * sw + j * dw - left), dropped when outside the
    output. The gather form jconv computes shares nothing with this.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    (sh, sw), (dh, dw) = stride, dilation
    (top, bottom), (left, right) = pads
    ho = (h - 1) * sh - top - bottom + dh * (kh - 1) + output_padding[0] + 1
    wo = (wd - 1) * sw - left - right + dw * (kw - 1) + output_padding[1] + 1
    y = np.zeros((n, og * groups, ho, wo))
    for ci in range(c):
        g = ci // cg
        for a in range(h):
            for b in range(wd):
                for i in range(kh):
                    for j in range(kw):
                        p, q = a * sh + i * dh - top, b * sw + j * dw - left
                        if 0 <= p < ho and 0 <= q < wo:
                            y[:, g * og : (g + 1) * og, p, q] += np.outer(
                                x[:, ci, a, b], w[ci, :, i, j]
                            )
    return y


def conv_input_dilated_numpy(
    x, w, *, input_dilation, stride=(1, 1), pads=((0, 0), (0, 0)), **kwargs
):
    """conv_numpy of x with input_dilation - 1 zeros put between its pixels (lax's lhs_dilation);
    negative pads crop the dilated input."""
    x = np.asarray(x, np.float64)
    n, c, h, wd = x.shape
    ih, iw = input_dilation
    z = np.zeros((n, c, (h - 1) * ih + 1, (wd - 1) * iw + 1))
    z[:, :, ::ih, ::iw] = x
    crop = tuple(
        slice(max(-lo, 0), z.shape[2 + a] - max(-hi, 0)) for a, (lo, hi) in enumerate(pads)
    )
    z = z[:, :, crop[0], crop[1]]
    return conv_numpy(
        z, w, stride=stride, pads=tuple((max(lo, 0), max(hi, 0)) for lo, hi in pads), **kwargs
    )


NON_FINITE_CLASSES = {"nan": np.isnan, "+inf": np.isposinf, "-inf": np.isneginf}


def same_non_finite(a, b) -> bool:
    """Whether a and b hold NaN, +Inf and -Inf at the same entries."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return all((test(a) == test(b)).all() for test in NON_FINITE_CLASSES.values())


def assert_same_non_finite(actual, expected, what: str) -> None:
    """NaN, +Inf and -Inf exactly where expected has them."""
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    for name, test in NON_FINITE_CLASSES.items():
        got, want = test(actual), test(expected)
        assert (got == want).all(), (
            f"{what}: {name} at {int(got.sum())} entries, the reference has {int(want.sum())} "
            f"({int((got != want).sum())} differ)"
        )
