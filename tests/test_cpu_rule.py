"""'auto' on a CPU with bfloat16 and float16 inputs: 'banded' and 'taps' (but a 1x1
'taps') computed in float32 on the CPU's branch only (jconv/_auto.py, cpu_compute_dtype),
against lax at HIGHEST, forward and gradients, under jit, vmap, jvp and linear_transpose."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._auto import BANDED_GRADIENTS, TAPS_BANDED_GRADIENTS, choose_method, cpu_compute_dtype
from jconv._checks import check_conv_args
from tests.reference import assert_close, conv_lax

# (x NCHW, kernel OIHW, conv2d kwargs, the CPU rule's lowering for float16 and bfloat16,
# widened to float32 there); in float32 the rule's lowering is the same but for strided
# kernels on fewer than 64 channels (lax)
CASES = [
    ((3, 6, 14, 14), (16, 6, 5, 5), {}, "banded", True),  # LeNet conv2
    ((1, 2, 8, 8), (4, 2, 5, 5), {}, "banded", True),  # a small one, quick to compile
    ((2, 8, 12, 12), (16, 8, 3, 3), {"stride": 2, "padding": 1}, "xla", False),  # shallow
    ((2, 40, 9, 9), (24, 40, 3, 3), {"stride": 2, "padding": 1}, "taps", True),  # f32: lax
    ((2, 40, 6, 6), (24, 40, 1, 1), {}, "taps", False),  # one bfloat16 GEMM
    ((2, 32, 6, 6), (32, 32, 3, 3), {"padding": 1}, "winograd", False),  # f32 transforms
    ((1, 64, 7, 7), (8, 64, 3, 3), {"stride": 2, "padding": 1}, "taps", True),  # f32 too
]


def spec_of(x_shape, k_shape, kwargs, dtype):
    return check_conv_args(x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, **kwargs)


@pytest.mark.parametrize("x_shape,k_shape,kwargs,method,widened", CASES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_which_lowerings_compute_in_float32(x_shape, k_shape, kwargs, method, widened, dtype):
    spec = spec_of(x_shape, k_shape, kwargs, dtype)
    if dtype == "float32" and kwargs.get("stride", 1) > 1 and k_shape[1] < 64:
        method = "xla"  # 'taps' lost to lax forward in float32 with 32 channels
    assert choose_method(spec) == method
    expected = jnp.float32 if widened and dtype != "float32" else None
    assert cpu_compute_dtype(spec, method) == expected


def arrays(x_shape, k_shape, kwargs, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(k_shape) / np.sqrt(np.prod(k_shape[1:]))).astype(np.float32)
    y_shape = jax.eval_shape(lambda: conv_lax(x, w, **kwargs)).shape
    ct = rng.standard_normal(y_shape).astype(np.float32)
    narrow = [jnp.asarray(a, dtype) for a in (x, w, ct)]
    return (*(np.asarray(a, np.float32) for a in narrow), narrow)  # the same values in f32


@pytest.mark.parametrize("case", [1, 4])
def test_auto_is_the_lowering_in_float32_rounded(case, on_cpu):
    """Bit for bit: 'auto' on bfloat16 is the CPU rule's lowering on the inputs in float32,
    rounded to bfloat16 (1x1 'taps': on the bfloat16 inputs themselves); its gradients are
    that computation's. Both within bfloat16's tolerance of lax at HIGHEST in float32."""
    x_shape, k_shape, kwargs, method, widened = CASES[case]
    x, w, ct, (xb, wb, ctb) = arrays(x_shape, k_shape, kwargs, jnp.bfloat16)

    def via(method, wide):
        def conv(x, w):
            if wide:
                x, w = x.astype(jnp.float32), w.astype(jnp.float32)
            return jconv.conv2d(x, w, method=method, **kwargs).astype(jnp.bfloat16)

        y, vjp = jax.vjp(conv, xb, wb)
        return (y, *vjp(ctb))

    got, expected = via("auto", False), via(method, widened)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    y_ref, vjp = jax.vjp(lambda x, w: conv_lax(x, w, **kwargs), x, w)
    for a, b in zip(got, (y_ref, *vjp(ct))):
        assert_close(np.asarray(a, np.float32), b, dtype=jnp.bfloat16)


def test_widened_branch_transformations(on_cpu):
    """jvp, vmap over the batch and linear_transpose pass through the float32 branch and
    agree with lax within bfloat16's tolerance."""
    x_shape, k_shape, kwargs, _, _ = CASES[1]
    x, w, ct, (xb, wb, ctb) = arrays(x_shape, k_shape, kwargs, jnp.bfloat16, seed=1)
    conv = lambda x, w: jconv.conv2d(x, w, **kwargs)
    ref = lambda x, w: conv_lax(x, w, **kwargs)
    f32 = lambda a: np.asarray(a, np.float32)
    y, ty = jax.jvp(conv, (xb, wb), (xb, wb))
    y_ref, ty_ref = jax.jvp(ref, (x, w), (x, w))
    assert_close(f32(y), y_ref, dtype=jnp.bfloat16)
    assert_close(f32(ty), ty_ref, dtype=jnp.bfloat16)
    batched = jax.vmap(conv, in_axes=(0, None))(xb[:, None], wb)[:, 0]
    np.testing.assert_array_equal(f32(batched), f32(conv(xb, wb)))
    (dx,) = jax.linear_transpose(lambda x: conv(x, wb), xb)(ctb)
    (dx_ref,) = jax.linear_transpose(lambda x: ref(x, w), x)(ct)
    assert_close(f32(dx), dx_ref, dtype=jnp.bfloat16)


def test_accelerators_keep_bfloat16():
    """Exported for CUDA, LeNet conv2 in bfloat16 is lax's bfloat16 convolution; for the
    CPU, float32 matrix products."""
    x, w = (jax.ShapeDtypeStruct(s, jnp.bfloat16) for s in CASES[0][:2])
    conv = jax.jit(lambda x, w: jconv.conv2d(x, w))
    cuda = jax.export.export(conv, platforms=["cuda"])(x, w).mlir_module()
    (line,) = [ln for ln in cuda.splitlines() if "stablehlo.convolution" in ln]
    assert "bf16" in line and "f32" not in line
    cpu = jax.export.export(conv, platforms=["cpu"])(x, w).mlir_module()
    dots = [ln for ln in cpu.splitlines() if "stablehlo.dot_general" in ln]
    assert dots and all("xf32>" in ln and "bf16" not in ln for ln in dots)


def test_auto_running_lax_compiles_as_lax(on_cpu):
    """A bfloat16 first layer on 3 channels, 3x3 stride 2 to 64 outputs: the CPU runs lax,
    CUDA 'pallas'. Under a caller's jit and grad, 'auto''s CPU program has lax's
    convolutions, as XLA's CPU compiler rewrites them (names and result layouts). With
    the platform choice made in a function of its own, it did not rewrite them, and the
    kernel gradient ran 27x slower on a 224x224 stem (7x7, now lax's forward with the
    band's gradients)."""
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((3, 3, 3, 64), jnp.bfloat16)
    kwargs = {"stride": 2, "padding": 1, "layout": "NHWC"}
    spec = check_conv_args(x.shape, w.shape, x_dtype=x.dtype, kernel_dtype=w.dtype, **kwargs)
    assert choose_method(spec) == "xla"

    def convolutions(method):
        """(instruction name without its number, result type) of each convolution."""
        loss = lambda x, w: jnp.sum(jconv.conv2d(x, w, method=method, **kwargs).astype(float))
        text = jax.jit(jax.grad(loss, (0, 1))).lower(x, w).compile().as_text()
        found = []
        for line in text.splitlines():
            if " convolution(" in line:
                name, rest = line.split(" = ", 1)
                found.append((name.strip().split(".")[0], rest.split(" ")[0]))
        return sorted(found)

    auto = convolutions("auto")
    assert len(auto) == 2 and auto == convolutions("xla")  # dx and dw (a sum needs no y)


# (name, x NCHW, kernel OIHW, conv2d kwargs, the CPU rule's lowering): the shapes the
# 'banded' rule was measured on (jconv/_auto.py, BENCHMARKS.md), including where lax's
# forward pass won (there the band's gradients only, BANDED_GRADIENTS) or lax won both
# ways, and the depthwise layer
G = BANDED_GRADIENTS
# one input channel, or 2 or 3 with 3x3 kernels: 'taps''s forward pass with the band's
# gradients (float16, not measured on 2 or 3 channels, keeps the band's forward there)
T = TAPS_BANDED_GRADIENTS
RULE_SHAPES = [
    ("rgb112", (4, 3, 112, 112), (32, 3, 3, 3), {"padding": "SAME"}, T),  # by shift
    ("rgb128_8", (4, 3, 128, 128), (8, 3, 3, 3), {"padding": "SAME"}, T),
    ("two64", (8, 2, 64, 64), (32, 2, 3, 3), {"padding": "SAME"}, T),
    ("rgb32_n64", (64, 3, 32, 32), (32, 3, 3, 3), {"padding": "SAME"}, T),
    ("rgb64_7x7", (4, 3, 64, 64), (32, 3, 7, 7), {"padding": "SAME"}, "banded"),
    ("two64_5x5", (8, 2, 64, 64), (16, 2, 5, 5), {"padding": "SAME"}, "banded"),
    ("gray128", (8, 1, 128, 128), (16, 1, 5, 5), {"padding": "SAME"}, T),
    ("lenet1", (256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}, T),
    ("gray64_64", (16, 1, 64, 64), (64, 1, 3, 3), {"padding": 1}, T),
    ("gray64_5x5", (16, 1, 64, 64), (64, 1, 5, 5), {"padding": 2}, G),  # 1600 products
    ("gray112_7x7", (4, 1, 112, 112), (16, 1, 7, 7), {"padding": 3}, "banded"),  # 784
    ("rgb56_5x5", (16, 3, 56, 56), (24, 3, 5, 5), {}, "banded"),
    ("rgb64_5x5", (8, 3, 64, 64), (32, 3, 5, 5), {"padding": "SAME"}, "banded"),
    ("cifar_in", (64, 3, 32, 32), (16, 3, 3, 3), {"padding": "SAME"}, T),  # sliced
    ("c6_5x5_48", (64, 6, 14, 14), (48, 6, 5, 5), {}, "banded"),  # 5x5: any channels
    ("vgg224", (2, 3, 224, 224), (64, 3, 3, 3), {"padding": "SAME"}, G),  # 64 outputs
    ("c4_wide", (4, 4, 64, 256), (32, 4, 3, 3), {"padding": "SAME"}, G),  # 4 channels
    ("gray96", (4, 1, 96, 96), (32, 1, 3, 3), {"padding": "SAME"}, T),
    ("c8_16px", (32, 8, 16, 16), (32, 8, 3, 3), {"padding": "SAME"}, G),  # sliced, 8 -> 32
    ("c4_28_64", (16, 4, 28, 28), (64, 4, 3, 3), {"padding": "SAME"}, G),  # sliced, 4 -> 64
    ("c8_96", (8, 8, 96, 96), (16, 8, 3, 3), {"padding": "SAME"}, "xla"),  # 8 channels, wide
    ("stem7", (2, 3, 224, 224), (64, 3, 7, 7), {"stride": 2, "padding": 3}, G),
    ("stem7_112", (8, 3, 112, 112), (64, 3, 7, 7), {"stride": 2, "padding": 3}, G),
    ("rgb_5x5_s2", (4, 3, 128, 128), (32, 3, 5, 5), {"stride": 2, "padding": 2}, G),
    ("gray_7x7_s2", (4, 1, 128, 128), (32, 1, 7, 7), {"stride": 2, "padding": 3}, G),
    ("gray_s2", (8, 1, 128, 128), (32, 1, 3, 3), {"stride": 2, "padding": 1}, T),
    ("gray_5x5_s2", (8, 1, 128, 128), (16, 1, 5, 5), {"stride": 2, "padding": 2}, T),
    ("gray_s2_64", (8, 1, 128, 128), (64, 1, 3, 3), {"stride": 2, "padding": 1}, T),
    ("mobile_stem", (2, 3, 224, 224), (32, 3, 3, 3), {"stride": 2, "padding": "SAME"}, T),
    ("two_s2", (16, 2, 64, 64), (32, 2, 3, 3), {"stride": 2, "padding": 1}, T),
    ("rgb_s3", (4, 3, 96, 96), (24, 3, 3, 3), {"stride": 3}, T),
    ("rgb_s2_64", (2, 3, 224, 224), (64, 3, 3, 3), {"stride": 2, "padding": 1}, "xla"),
    ("rgb_dilated", (4, 3, 64, 64), (16, 3, 3, 3), {"dilation": 2, "padding": 2}, "xla"),
    ("depthwise", (4, 128, 56, 56), (128, 1, 3, 3), {"groups": 128, "padding": 1}, "taps"),
]


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,method", [c[1:] for c in RULE_SHAPES], ids=[c[0] for c in RULE_SHAPES]
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_rule_on_the_measured_shapes(x_shape, k_shape, kwargs, method, dtype):
    method = method[dtype] if isinstance(method, dict) else method
    assert choose_method(spec_of(x_shape, k_shape, kwargs, dtype)) == method


def test_float16_keeps_the_band_forward_on_few_channels():
    """'taps''s elementwise forward pass on 2 or 3 channels was measured in float32 and
    bfloat16 only: float16 keeps the band's."""
    rgb112 = dict((c[0], c[1:]) for c in RULE_SHAPES)["rgb112"]
    x_shape, k_shape, kwargs, _ = rgb112
    assert choose_method(spec_of(x_shape, k_shape, kwargs, "float32")) == T
    assert choose_method(spec_of(x_shape, k_shape, kwargs, "float16")) == "banded"
