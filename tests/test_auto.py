"""method='auto': which lowering each platform's rule picks, and that the choice is made
when the computation is lowered (jax.lax.platform_dependent), under every transformation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._auto import (
    ACCELERATOR_PLATFORMS,
    BANDED_GRADIENTS,
    GROUPED_ELEMENTWISE,
    TAPS_BANDED_GRADIENTS,
    WINOGRAD_1D,
    WINOGRAD_EIGEN_GRADIENTS,
    WINOGRAD_SHALLOW_MAX_BYTES,
    XLA_EIGEN,
    auto_methods,
    choose_method,
    choose_phase_method,
    pallas_class,
)
from jconv._checks import check_conv_args
from jconv._method_winograd import transformed_output_bytes
from tests._helpers import lowerings_run
from tests.reference import assert_close

# (x shape NCHW, kernel shape OIHW, conv2d kwargs, the CPU rule's choice)
CPU_CHOICES = [
    ((256, 6, 14, 14), (16, 6, 5, 5), {}, "banded"),  # LeNet conv2
    ((256, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}, TAPS_BANDED_GRADIENTS),  # LeNet conv1
    ((4, 100, 68, 68), (100, 100, 5, 5), {}, WINOGRAD_1D),  # the lesson's layer
    ((2, 64, 56, 56), (64, 64, 3, 3), {"padding": 1}, "winograd"),  # ResNet 3x3
    ((4, 64, 56, 56), (128, 64, 3, 3), {"stride": 2, "padding": 1}, "taps"),  # 64 deep
    ((8, 32, 32, 32), (64, 32, 3, 3), {"stride": 2, "padding": 1}, "xla"),  # 32: lax
    ((4, 64, 56, 56), (64, 64, 5, 5), {"stride": 2, "padding": 2}, "xla"),  # 5x5: lax
    ((4, 64, 56, 56), (128, 64, 1, 1), {"stride": 2}, "taps"),  # a strided 1x1
    # lax's, on XLA:CPU's kernel rather than YNNPACK ('taps' lost to lax on the first)
    ((2, 64, 56, 56), (64, 64, 3, 3), {"dilation": 2}, XLA_EIGEN),
    ((2, 64, 56, 56), (64, 64, 7, 7), {"padding": 3}, XLA_EIGEN),  # beyond F(2, 5)
    ((2, 64, 56, 56), (64, 64, 7, 7), {}, "xla"),  # VALID: 7 more of 50 rows, too many
    ((2, 64, 56, 56), (128, 64, 7, 7), {"padding": 3}, "xla"),  # 128 outputs: YNNPACK on both cores
    ((4, 256, 28, 28), (256, 8, 3, 3), {"padding": 1, "groups": 32}, GROUPED_ELEMENTWISE),
    (
        (4, 256, 28, 28),
        (256, 8, 3, 3),
        {"stride": 2, "padding": 1, "groups": 32},
        GROUPED_ELEMENTWISE,
    ),
    ((2, 256, 56, 56), (64, 256, 1, 1), {}, "taps"),  # 1x1
    ((4, 128, 56, 56), (128, 1, 3, 3), {"groups": 128, "padding": 1}, "taps"),  # depthwise
    # outside the bench suite (bench_conv.py's EXTRA): the band (its gradients, with
    # 'taps''s elementwise forward pass on up to 3 channels and 32 outputs with 3x3
    # kernels) for a handful of channels only, on images narrow enough to slice its
    # windows one by one, or, with up to 3 channels and 32 outputs, cut by shift; lax
    # elsewhere
    ((64, 3, 32, 32), (16, 3, 3, 3), {"padding": 1}, TAPS_BANDED_GRADIENTS),  # CIFAR's first
    ((64, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}, "xla"),  # CIFAR 16 channels
    ((2, 16, 64, 256), (64, 16, 3, 3), {"padding": "SAME"}, "xla"),  # wide, 16 channels
    ((2, 3, 224, 224), (64, 3, 7, 7), {"stride": 2, "padding": 3}, BANDED_GRADIENTS),  # stem
    ((4, 3, 112, 112), (32, 3, 3, 3), {"padding": 1}, TAPS_BANDED_GRADIENTS),  # 3, wide
    ((8, 6, 14, 224), (16, 6, 5, 5), {}, "xla"),  # LeNet's conv2, 16 times as wide
    ((2, 1, 512, 512), (6, 1, 5, 5), {"padding": 2}, TAPS_BANDED_GRADIENTS),  # conv1, wide
    ((2, 64, 64, 256), (64, 64, 3, 3), {"padding": "SAME"}, "winograd"),  # more channels
    ((64, 64, 8, 8), (64, 64, 3, 3), {"padding": 1}, "winograd"),  # CIFAR 64 channels
    ((2, 16, 56, 56), (16, 16, 3, 3), {"stride": 2, "padding": 1}, "xla"),  # shallow, strided
    # few outputs: lax, not 'winograd' (`_winograd_wins`), nor XLA_EIGEN on 5x5 kernels
    ((64, 64, 10, 10), (3, 64, 3, 3), {"padding": 1}, "xla"),
    ((16, 256, 14, 14), (8, 256, 3, 3), {"padding": 1}, "xla"),
    ((8, 256, 14, 14), (8, 256, 5, 5), {"padding": 2}, "xla"),
    ((8, 256, 14, 14), (16, 256, 3, 3), {"padding": 1}, "winograd"),  # 16 outputs
    ((4, 256, 14, 14), (16, 256, 5, 5), {"padding": 2}, WINOGRAD_1D),
]


@pytest.mark.parametrize(
    "o,k,float32,bfloat16",
    [
        (24, 3, "xla", "winograd"),
        (32, 3, "winograd", "winograd"),
        (16, 5, XLA_EIGEN, WINOGRAD_1D),
        (8, 5, "xla", "xla"),
    ],
)
def test_winograd_on_32_channels(o, k, float32, bfloat16):
    """On fewer than WINOGRAD_SHALLOW_CHANNELS input channels float32 takes 'winograd' (or
    WINOGRAD_1D) from WINOGRAD_SHALLOW_MIN_OUTPUTS outputs, bfloat16 from
    WINOGRAD_MIN_OUTPUTS; below, lax (XLA_EIGEN in float32 on 5x5 kernels from 16)."""
    x_shape, k_shape, kwargs = (8, 32, 32, 32), (o, 32, k, k), {"padding": k // 2}
    assert choose_method(spec_of(x_shape, k_shape, kwargs)) == float32
    assert choose_method(spec_of(x_shape, k_shape, kwargs, "bfloat16")) == bfloat16


@pytest.mark.parametrize(
    "n,c,o,hw,expected",
    [
        (1, 32, 512, 32, "winograd"),  # 8 MiB of transformed outputs: the bound
        (2, 32, 512, 32, "xla"),  # 16 MiB
        (1, 32, 256, 64, "xla"),
        (1, 48, 512, 64, "xla"),
        (8, 64, 64, 56, "winograd"),  # 64 channels: not bounded
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_winograd_bytes_on_few_channels(n, c, o, hw, expected, dtype):
    """Below WINOGRAD_SHALLOW_CHANNELS input channels, 'winograd' only where its transformed
    outputs (16 positions of N * tiles x O in float32 for 3x3) fit WINOGRAD_SHALLOW_MAX_BYTES."""
    spec = spec_of((n, c, hw, hw), (o, c, 3, 3), {"padding": 1}, dtype)
    tiles = n * (hw // 2) ** 2  # 2x2 output tiles
    assert transformed_output_bytes(spec) == 16 * tiles * o * 4
    if (n, c, o, hw) == (1, 32, 512, 32):
        assert transformed_output_bytes(spec) == WINOGRAD_SHALLOW_MAX_BYTES
    assert choose_method(spec) == expected


def spec_of(x_shape, k_shape, kwargs, dtype="float32"):
    return check_conv_args(x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, **kwargs)


@pytest.mark.parametrize("x_shape,k_shape,kwargs,expected", CPU_CHOICES)
def test_cpu_choice(x_shape, k_shape, kwargs, expected):
    assert choose_method(spec_of(x_shape, k_shape, kwargs)) == expected


@pytest.mark.parametrize("x_shape,k_shape,kwargs,cpu", CPU_CHOICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_accelerators_run_lax(x_shape, k_shape, kwargs, cpu, dtype):
    """NCHW (where 'pallas' was not timed): lax on GPUs and TPUs (jconv/_auto.py). The CPU's
    rule picks by dtype too (strided kernels up to 3x3: 'taps' in bfloat16, and in float32 on 3x3
    kernels contracting at least 64 channels; one input channel: 'taps''s forward pass in
    float32 and bfloat16; XLA_EIGEN without groups in float32 only; GROUPED_ELEMENTWISE
    in bfloat16 on up to 4 channels a group)."""
    spec = spec_of(x_shape, k_shape, kwargs, dtype)
    rules = auto_methods(spec)
    assert rules == {
        "cpu": choose_method(spec), **dict.fromkeys(ACCELERATOR_PLATFORMS, "xla"),
        "default": "xla",
    }  # fmt: skip
    deep = k_shape[1] * k_shape[2] * k_shape[3] > 256  # not the few-channel class
    strided = kwargs.get("stride", 1) > 1 and k_shape[2:] != (1, 1) and deep
    strided = strided and k_shape[2] * k_shape[3] <= 9  # 5x5 and 7x7: lax in bfloat16 too
    if dtype == "bfloat16" and cpu == XLA_EIGEN and kwargs.get("groups", 1) == 1:
        cpu = "xla"  # YNNPACK takes float32 only: nothing to steer lax's convolution from
    if dtype == "bfloat16" and cpu == GROUPED_ELEMENTWISE:  # ResNeXt's 8 channels a group:
        cpu = "taps" if kwargs.get("stride", 1) > 1 else XLA_EIGEN  # over bfloat16's bound
    assert rules["cpu"] == ("taps" if dtype == "bfloat16" and strided else cpu)
    if dtype == "float32" and strided:  # float32: 'taps' on 3x3, 64 channels and more
        assert (cpu == "taps") == (k_shape[2:] == (3, 3) and k_shape[1] >= 64)


# NHWC (x shape, kernel shape HWIO, conv2d kwargs, dtype): the class in which 'pallas'
# ran faster than lax on an H200 (jconv/_auto.py), or None where CUDA keeps lax
NHWC = {"layout": "NHWC"}
PALLAS_CLASSES = [
    ((1024, 28, 28, 1), (5, 5, 1, 6), {"padding": 2}, "bfloat16", "few channels"),  # LeNet 1
    ((1024, 14, 14, 6), (5, 5, 6, 16), {}, "bfloat16", "few channels"),  # LeNet conv2
    ((32, 224, 224, 3), (7, 7, 3, 64), {"stride": 2, "padding": 3}, "bfloat16", "few channels"),
    ((64, 56, 56, 64), (3, 3, 64, 128), {"stride": 2, "padding": 1}, "bfloat16", "strided"),
    ((64, 56, 56, 256), (1, 1, 256, 512), {"stride": 2}, "bfloat16", "strided"),
    ((64, 56, 56, 256), (1, 1, 256, 64), {}, "bfloat16", None),  # 1x1: a tie
    ((64, 7, 7, 2048), (1, 1, 2048, 512), {}, "bfloat16", None),
    ((8, 32, 32, 20), (3, 3, 20, 64), {"padding": 1}, "bfloat16", "unaligned channels"),
    ((64, 56, 56, 64), (3, 3, 64, 64), {"padding": 1}, "bfloat16", None),  # ResNet 3x3: mixed
    ((64, 28, 28, 128), (3, 3, 128, 128), {"padding": 1}, "bfloat16", None),
    ((64, 68, 68, 100), (5, 5, 100, 100), {}, "bfloat16", "unaligned channels"),  # the lesson
    ((64, 28, 28, 128), (3, 3, 128, 100), {"padding": 1}, "bfloat16", None),  # O unaligned
    ((64, 56, 56, 128), (3, 3, 1, 128), {"padding": 1, "groups": 128}, "bfloat16", None),
    ((64, 56, 56, 64), (3, 3, 32, 64), {"stride": 2, "groups": 2}, "bfloat16", None),
    ((64, 56, 56, 64), (3, 3, 64, 64), {"stride": 2, "dilation": 2}, "bfloat16", None),
    ((1024, 14, 14, 6), (5, 5, 6, 16), {}, "float32", None),  # not timed in float32 ...
    ((1024, 14, 14, 6), (5, 5, 6, 16), {}, "float16", None),  # ... nor float16
    ((2**16, 182, 182, 3), (3, 3, 3, 8), {}, "bfloat16", None),  # past the int32 pixel index
]


@pytest.mark.parametrize("x_shape,k_shape,kwargs,dtype,expected", PALLAS_CLASSES)
def test_cuda_runs_pallas_on_its_measured_classes(x_shape, k_shape, kwargs, dtype, expected):
    """'pallas' on CUDA only (ROCm and TPUs keep lax); the CPU's rule is the CPU's."""
    spec = spec_of(x_shape, k_shape, {**kwargs, **NHWC}, dtype)
    assert pallas_class(spec) == expected
    rules = auto_methods(spec)
    assert rules["cuda"] == ("xla" if expected is None else "pallas")
    assert rules["rocm"] == rules["tpu"] == rules["default"] == "xla"
    assert rules["cpu"] == choose_method(spec)
    nchw = spec_of(
        (x_shape[0], x_shape[3], *x_shape[1:3]),
        (k_shape[3], k_shape[2], *k_shape[:2]),
        kwargs,
        dtype,
    )
    assert pallas_class(nchw) is None and auto_methods(nchw)["cuda"] == "xla"  # not timed


@pytest.mark.filterwarnings("ignore:The Pallas Triton backend is deprecated")  # jax >= 0.11
def test_cuda_export_shows_the_triton_kernels_or_lax():
    """Exported for CUDA, a LeNet-like layer (few channels) holds 'pallas''s three Triton
    kernels (forward and both gradients) and no convolution; a ResNet 3x3 stride-1
    layer holds lax's convolutions and no Triton call. The CPU's choices are unchanged."""
    triton = "__gpu$xla.gpu.triton"

    def exported(x_shape, k_shape, kwargs):
        x = jax.ShapeDtypeStruct(x_shape, jnp.bfloat16)
        w = jax.ShapeDtypeStruct(k_shape, jnp.bfloat16)
        conv = lambda x, w: jconv.conv2d(x, w, layout="NHWC", **kwargs)
        loss = lambda x, w: jnp.sum(conv(x, w).astype(jnp.float32) ** 2)
        step = jax.value_and_grad(loss, argnums=(0, 1))
        return jax.export.export(
            jax.jit(step),
            platforms=["cuda"],
            disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(triton)],
        )(x, w).mlir_module()

    lenet = ((2, 14, 14, 6), (5, 5, 6, 16), {})
    resnet = ((2, 8, 8, 32), (3, 3, 32, 32), {"padding": 1})
    text = exported(*lenet)
    assert text.count(triton) == 3 and "stablehlo.convolution" not in text
    text = exported(*resnet)
    assert "stablehlo.convolution" in text and triton not in text
    cpu = [choose_method(spec_of(x, k, {**kw, **NHWC}, "bfloat16")) for x, k, kw in (lenet, resnet)]
    assert cpu == ["banded", "winograd"]


def problem(seed=0, x_shape=(3, 6, 14, 14), k_shape=(16, 6, 5, 5)):
    """LeNet conv2's shapes on a small batch: the CPU rule picks 'banded'."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(k_shape).astype(np.float32)
    return x, w


def exported_text(fn, platforms, *args):
    return jax.export.export(jax.jit(fn), platforms=platforms)(*args).mlir_module()


def test_export_shows_each_platforms_lowering():
    """The module exported for a platform holds that platform's lowering only:
    a stablehlo.convolution for 'xla', matrix products (dot_general) for jconv's own
    (whose finiteness check holds lax's convolution as its exact fallback: one per
    member, inside the check's conditional)."""
    x, w = problem()
    assert choose_method(spec_of(x.shape, w.shape, {})) == "banded"
    conv = lambda x, w: jconv.conv2d(x, w)
    for platforms in (["cuda"], ["rocm"], ["tpu"]):
        text = exported_text(conv, platforms, x, w)
        assert "stablehlo.convolution" in text and "stablehlo.dot_general" not in text, platforms
    text = exported_text(conv, ["cpu"], x, w)
    assert "stablehlo.dot_general" in text and text.count("stablehlo.convolution") == 1
    # the same holds for the gradients: lax's own backward convolutions on a GPU
    grads = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
    text = exported_text(grads, ["cuda"], x, w)
    assert "stablehlo.convolution" in text and "stablehlo.dot_general" not in text
    text = exported_text(grads, ["cpu"], x, w)
    assert "stablehlo.dot_general" in text and text.count("stablehlo.convolution") == 2  # y, dw


def test_multi_platform_export_holds_both_and_runs_the_cpu_rule():
    """Exported for ['cpu', 'cuda'], one module carries both lowerings; called on the
    CPU it gives exactly what the CPU rule's lowering gives."""
    x, w = problem(1)
    exported = jax.export.export(
        jax.jit(lambda x, w: jconv.conv2d(x, w)), platforms=["cpu", "cuda"]
    )(x, w)
    text = exported.mlir_module()
    assert "stablehlo.convolution" in text and "stablehlo.dot_general" in text
    cpu = jax.devices("cpu")[0]
    x_cpu, w_cpu = jax.device_put((x, w), cpu)
    got = exported.call(x_cpu, w_cpu)
    np.testing.assert_array_equal(got, jconv.conv2d(x_cpu, w_cpu, method="banded"))


def test_auto_runs_the_default_backends_rule():
    """On the default device (the CPU, or a GPU machine's GPU), 'auto' gives bit for bit
    what the lowering of that platform's rule gives: 'banded' on a CPU, lax on a GPU."""
    x, w = problem(2)
    rules = auto_methods(spec_of(x.shape, w.shape, {}))
    backend = jax.default_backend()
    expected = rules["cpu" if backend == "cpu" else "tpu" if backend == "tpu" else "cuda"]
    np.testing.assert_array_equal(jconv.conv2d(x, w), jconv.conv2d(x, w, method=expected))


# (x shape, kernel shape, conv2d kwargs, CPU choice, its transformations beyond grad,
# vmap and remat). 'auto' supports what every platform's lowering supports: all of them
# support every transformation (tests/test_transformations.py).
TRANSFORM_CASES = [
    ((2, 6, 10, 10), (16, 6, 5, 5), {}, "banded", ("jvp", "transpose")),
    ((2, 32, 6, 6), (32, 32, 3, 3), {"padding": 1}, "winograd", ("jvp", "transpose")),
    ((2, 72, 6, 6), (8, 72, 1, 1), {}, "taps", ("jvp", "transpose")),
]


@pytest.mark.parametrize("x_shape,k_shape,kwargs,cpu,extra", TRANSFORM_CASES)
def test_transformations_see_the_chosen_lowering(x_shape, k_shape, kwargs, cpu, extra):
    """grad, vmap, remat (and jvp, linear_transpose where the CPU lowering has them)
    through the platform dispatch equal the same transformation of the lowering, bit
    for bit, under jit."""
    assert choose_method(spec_of(x_shape, k_shape, kwargs)) == cpu
    x, w = problem(3, x_shape, k_shape)
    y_shape = jax.eval_shape(lambda: jconv.conv2d(x, w, **kwargs)).shape
    ct = np.random.default_rng(4).standard_normal(y_shape).astype(np.float32)

    @functools.partial(jax.jit, static_argnums=0)  # all of them in one program per method
    def transformed(method, x, w, ct):
        conv = lambda x, w: jconv.conv2d(x, w, method=method, precision="highest", **kwargs)
        loss = lambda x, w: jnp.vdot(conv(x, w), ct)
        out = {
            "grad": jax.grad(loss, (0, 1))(x, w),
            "remat": jax.grad(jax.checkpoint(loss), (0, 1))(x, w),
            "vmap": jax.vmap(conv, in_axes=(0, None))(x[:, None], w),
        }
        if "jvp" in extra:
            out["jvp"] = jax.jvp(conv, (x, w), (x, w))
        if "transpose" in extra:
            out["transpose"] = jax.linear_transpose(lambda x: conv(x, w), x)(ct)
        return out

    with jax.default_device(jax.devices("cpu")[0]):
        got, expected = transformed("auto", x, w, ct), transformed(cpu, x, w, ct)
    for name in got:
        jax.tree.map(np.testing.assert_array_equal, got[name], expected[name])


def test_dispatch_costs_no_memory():
    """The other platforms' branch leaves nothing behind in the compiled program: the
    same peak memory as the CPU rule's lowering, forward and with gradients."""
    x, w = problem(5, (32, 6, 14, 14))

    def peak(method, grad):
        f = lambda x, w: jnp.sum(jconv.conv2d(x, w, method=method) ** 2)
        f = jax.value_and_grad(f, (0, 1)) if grad else f
        with jax.default_device(jax.devices("cpu")[0]):
            stats = jax.jit(f).lower(x, w).compile().memory_analysis()
        return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes

    for grad in (False, True):
        assert peak("auto", grad) == peak("banded", grad)


@pytest.mark.parametrize("method", ["banded"])
@pytest.mark.parametrize("c,o,k", [(1, 6, 5), (6, 16, 5), (16, 64, 3)])
def test_program_does_not_grow_with_width(c, o, k, method):
    """Past some width, the program (forward and gradients, as lowered for a CPU) stops
    growing: banded's windows are cut by shift beyond MAX_BLOCK_SLICES block windows."""

    def size(width: int) -> int:
        x = jax.ShapeDtypeStruct((2, c, 16, width), jnp.float32)
        w = jax.ShapeDtypeStruct((o, c, k, k), jnp.float32)
        loss = lambda x, w: jnp.sum(jconv.conv2d(x, w, padding="SAME", method=method) ** 2)
        traced = jax.jit(jax.grad(loss, argnums=(0, 1))).trace(x, w)
        return len(traced.lower(lowering_platforms=("cpu",)).as_text().splitlines())

    assert size(4096) == size(1024)


def test_transposed_rules():
    """Input dilation: on a CPU the sub-pixel phases, each by the plain rule ('winograd' for
    DCGAN's 2x2 phase kernels); lax elsewhere."""
    from jconv._auto import PHASES
    from jconv._subpixel import phase_spec, plan

    x, w = problem(6, (1, 72, 4, 4), (16, 72, 4, 4))  # DCGAN's 4x4, stride 2, padding 1
    kw = dict(input_dilation=2, padding=2)
    spec = check_conv_args(
        x.shape, w.shape, x_dtype="float32", kernel_dtype="float32", transposed_ok=True, **kw
    )
    rules = auto_methods(spec)
    assert rules == {"cpu": PHASES, **dict.fromkeys(ACCELERATOR_PLATFORMS, "xla"), "default": "xla"}
    ph, pw = plan(spec)
    phases = [phase_spec(spec, a, b) for a in ph.phases for b in pw.phases]
    assert len(phases) == 4 and {(s.kh, s.kw) for s in phases} == {(2, 2)}
    assert {choose_method(s) for s in phases} == {"winograd"}
    # too small for XLA_EIGEN's extra row (jconv/_method_xla_eigen.py): 'winograd' stays
    assert {choose_phase_method(s) for s in phases} == {"winograd"}
    with jax.default_device(jax.devices("cpu")[0]):
        np.testing.assert_array_equal(
            jconv.conv2d(x, w, **kw), jconv.conv2d(x, w, method="winograd", **kw)
        )


def _phases(x_shape, k_shape, dtype="float32", **kwargs):
    from jconv._subpixel import phase_spec, plan

    spec = check_conv_args(
        x_shape, k_shape, x_dtype=dtype, kernel_dtype=dtype, transposed_ok=True, **kwargs
    )
    ph, pw = plan(spec)
    return [phase_spec(spec, a, b) for a in ph.phases for b in pw.phases if a.reads_x and b.reads_x]


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,dtype,plain,phase",
    [
        # 4x4 stride-2 up-sampling (DCGAN's): four 2x2 phases that the plain rule runs by
        # 'winograd' (C * 4 taps > BANDED_MAX_CONTRACTION), float32 -> XLA_EIGEN
        ((2, 128, 16, 16), (64, 128, 4, 4), {"input_dilation": 2, "padding": 2}, "float32",
         {"winograd"}, {XLA_EIGEN}),
        # bfloat16: 'winograd''s forward pass with XLA_EIGEN's gradients, no extension needed
        ((2, 128, 16, 16), (64, 128, 4, 4), {"input_dilation": 2, "padding": 2}, "bfloat16",
         {"winograd"}, {WINOGRAD_EIGEN_GRADIENTS}),
        ((2, 144, 16, 16), (64, 144, 3, 3), {"input_dilation": 2, "padding": 1}, "bfloat16",
         {"winograd", "taps"}, {WINOGRAD_EIGEN_GRADIENTS, "taps"}),
        ((2, 128, 16, 16), (64, 128, 4, 4), {"input_dilation": 2, "padding": 2}, "float16",
         {"winograd"}, {"winograd"}),  # not measured in float16
        # 3x3 stride 2, padding 1: 2x1 and 1x2 phases -> XLA_EIGEN, 1x1 'taps'; the 2x2
        # phase's output is one row and column shorter than its input: no extension
        ((2, 144, 16, 16), (64, 144, 3, 3), {"input_dilation": 2, "padding": 1}, "float32",
         {"winograd", "taps"}, {XLA_EIGEN, "winograd", "taps"}),
        # 3x3 phases (6x6 stride 2): 'winograd', as the plain rule
        ((2, 128, 16, 16), (64, 128, 6, 6), {"input_dilation": 2, "padding": 3}, "float32",
         {"winograd"}, {"winograd"}),
    ],
)  # fmt: skip
def test_phase_rule(x_shape, k_shape, kwargs, dtype, plain, phase):
    """A transposed layer's phases: XLA_EIGEN instead of the plain rule's 'winograd' on
    float32 phase kernels of at most 2x2 that `extension` steers, 'winograd''s forward pass
    with XLA_EIGEN's gradients on bfloat16 ones (compile time, and faster with the
    gradient: jconv/_auto.py)."""
    phases = _phases(x_shape, k_shape, dtype, **kwargs)
    assert {choose_method(s) for s in phases} == plain
    assert {choose_phase_method(s) for s in phases} == phase


def test_plain_2x2_keeps_winograd():
    """The phase rule is for phases: a plain 2x2 convolution stays 'winograd'."""
    spec = spec_of((8, 128, 28, 28), (64, 128, 2, 2), {})
    assert choose_method(spec) == "winograd"


def test_phase_rule_runs_lax_numerics():
    """'auto' on DCGAN's 4x4 stride-2 up-sampling (its phases by XLA_EIGEN) against lax's
    input-dilated convolution at HIGHEST: the output and both gradients, under jit."""
    kw = dict(input_dilation=2, padding=2)
    x, w = problem(7, (2, 128, 16, 16), (32, 128, 4, 4))
    assert {choose_phase_method(s) for s in _phases(x.shape, w.shape, **kw)} == {XLA_EIGEN}
    ct = np.random.default_rng(8).standard_normal((2, 32, 32, 32)).astype(np.float32)

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), [(2, 2), (2, 2)], lhs_dilation=(2, 2),
            precision=jax.lax.Precision.HIGHEST,
        )  # fmt: skip

    def auto(x, w):
        return jconv.conv2d(x, w, **kw)

    with jax.default_device(jax.devices("cpu")[0]):
        for f in (auto, lax_conv):
            assert jax.eval_shape(f, x, w).shape == ct.shape
        got = jax.jit(lambda x, w: jax.vjp(auto, x, w)[1](ct))(x, w)
        want = jax.vjp(lax_conv, x, w)[1](ct)
        np.testing.assert_allclose(jax.jit(auto)(x, w), lax_conv(x, w), rtol=1e-4, atol=1e-4)
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("k,padding", [(4, 2), (3, 1)])
def test_bfloat16_phase_rule_runs_lax_numerics(k, padding):
    """'auto' on bfloat16 stride-2 up-samplings (4x4, DCGAN's; 3x3), their 2x2, 2x1 and 1x2
    phases by 'winograd''s forward pass with XLA_EIGEN's gradients: the output and both
    gradients, under jit, within bfloat16's tolerance of lax's input-dilated convolution
    on the same values in float32."""
    kw = dict(input_dilation=2, padding=padding)
    x, w = (a.astype(jnp.bfloat16) for a in problem(9, (2, 128, 16, 16), (32, 128, k, k)))
    assert WINOGRAD_EIGEN_GRADIENTS in {
        choose_phase_method(s) for s in _phases(x.shape, w.shape, "bfloat16", **kw)
    }
    f32 = lambda a: a.astype(jnp.float32)
    auto = lambda x, w: jconv.conv2d(x, w, **kw)
    ref = lambda x, w: jconv.conv2d(f32(x), f32(w), method="xla", precision="highest", **kw)
    with jax.default_device(jax.devices("cpu")[0]):
        assert WINOGRAD_EIGEN_GRADIENTS in lowerings_run(jax.grad(lambda *a: auto(*a).sum()), x, w)
        y, vjp = jax.vjp(jax.jit(auto), x, w)
        y_ref, vjp_ref = jax.vjp(ref, x, w)
        assert y.dtype == jnp.bfloat16
        assert_close(y, y_ref, jnp.bfloat16)
        ct = jnp.asarray(np.random.default_rng(10).standard_normal(y.shape), jnp.bfloat16)
        for got, want in zip(vjp(ct), vjp_ref(f32(ct))):
            assert got.dtype == jnp.bfloat16
            assert_close(got, want, jnp.bfloat16, scale=float(jnp.max(jnp.abs(want))) + 1.0)
