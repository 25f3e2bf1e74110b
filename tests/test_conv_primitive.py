"""jconv/_conv_primitive.py: the members it binds under vmap and transposition.

Values under every transformation are compared with lax in
tests/test_transformations.py; here, which member and lowering run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

import jconv
from jconv import _conv_primitive as conv_primitive
from jconv._conv_primitive import conv_p
from tests._cpu import cpu_mesh, needs_8_cpu_devices
from tests.reference import assert_close, conv_lax

RNG = np.random.default_rng(7)
SAMPLES = RNG.standard_normal((3, 7, 7, 6)).astype(np.float32)  # 3 unbatched NHWC samples
W_HWIO = RNG.standard_normal((3, 3, 6, 4)).astype(np.float32)
X = RNG.standard_normal((2, 6, 7, 7)).astype(np.float32)  # NCHW
WS = RNG.standard_normal((5, 4, 6, 3, 3)).astype(np.float32)  # 5 OIHW kernels


def bound_ops(fn, *args):
    """(role, lowering name, spec) of every conv_p in fn's jaxpr, nested ones included."""
    found = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive is conv_p:
                op = eqn.params["op"]
                found.append((op.role, op.lowering.name, op.spec))
            for p in eqn.params.values():
                for sub in p if isinstance(p, (list, tuple)) else [p]:
                    if hasattr(sub, "jaxpr"):
                        walk(getattr(sub.jaxpr, "jaxpr", sub.jaxpr))
                    elif hasattr(sub, "eqns"):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


@pytest.mark.parametrize("method", ["banded", "winograd"])
def test_vmapped_samples_fold_into_the_batch(method):
    """vmap over unbatched samples, and its gradients, keep the method's own lowering on
    a 3 times larger batch: no per-sample loop, no select between fast and exact."""

    def loss(w):
        conv = lambda xi: jconv.conv2d(xi, w, layout="NHWC", method=method, padding=1)
        return jnp.sum(jax.vmap(conv)(SAMPLES) ** 2)

    ops = bound_ops(jax.grad(loss), W_HWIO)
    assert {role for role, _, _ in ops} == {"y", "dw"}
    assert all(name == method and spec.n == 3 for _, name, spec in ops)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("method", ["banded", "winograd", "taps"])
def test_vmapped_kernels_fold_into_output_channels(method, groups):
    """Five kernels on one x (an ensemble) are one convolution with five times the output
    channels, run by the method itself; so is the kernel gradient under that vmap, whose
    output gradients are vmapped with x shared. Each kernel's result and gradient against
    lax, the groups kept together."""
    ws = WS[:, :, : 6 // groups]  # (5, O, C / groups, 3, 3)
    conv = lambda w: jconv.conv2d(X, w, method=method, groups=groups, precision="highest")
    got = jax.vmap(conv)(ws)
    ct = RNG.standard_normal(got.shape[1:]).astype(np.float32)
    grad = jax.vmap(jax.grad(lambda w: jnp.vdot(conv(w), ct)))
    grads = grad(ws)
    if groups == 1 and method != "taps":  # 'taps' on several channels is plain jnp (no
        # primitive), to which 'banded' and 'winograd' hand groups
        ops = bound_ops(jax.vmap(conv), ws)
        assert [(role, name) for role, name, _ in ops] == [("y", method)]
        assert ops[0][2].groups == groups and ops[0][2].o == 20
        roles = {(role, name) for role, name, _ in bound_ops(grad, ws)}
        assert roles == {("y", method), ("dw", method)}
    ref = lambda w: conv_lax(X, w, groups=groups)
    for k in range(5):
        assert_close(got[k], ref(ws[k]))
        assert_close(grads[k], jax.grad(lambda w: jnp.vdot(ref(w), ct))(ws[k]))


def test_vmapped_depthwise_kernels_fold_into_a_channel_multiplier():
    """Five depthwise kernels on one x: one depthwise convolution with a channel multiplier
    of five (each channel's group holds its five kernels' outputs), and its gradient."""
    ws = RNG.standard_normal((5, 6, 1, 3, 3)).astype(np.float32)
    conv = lambda w: jconv.conv2d(X, w, groups=6, padding=1, method="taps", precision="highest")
    ops = bound_ops(jax.vmap(conv), ws)
    assert [(role, spec.groups, spec.o) for role, _, spec in ops] == [("y", 6, 30)]
    got = jax.vmap(conv)(ws)
    ct = RNG.standard_normal(got.shape[1:]).astype(np.float32)
    grads = jax.vmap(jax.grad(lambda w: jnp.vdot(conv(w), ct)))(ws)
    ref = lambda w: conv_lax(X, w, groups=6, padding=1)
    for k in range(5):
        assert_close(got[k], ref(ws[k]))
        assert_close(grads[k], jax.grad(lambda w: jnp.vdot(ref(w), ct))(ws[k]))


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("method", ["banded", "winograd"])
def test_vmapped_samples_and_kernels(method, small, monkeypatch, request):
    """Five (sample, kernel) pairs are five problems that 'banded' and 'winograd' cannot run
    as groups: each in turn by the method itself (a lax.map); small ones (below
    ONE_BY_ONE_MIN_MULTIPLY_ADDS, as these are unless the bound is lowered) as five
    groups by 'taps'. Per-sample kernel gradients (vmap of grad: x and the output gradient
    both vmapped), and input gradients with a kernel per sample, the same way. Values and
    gradients against lax."""
    if not small:
        monkeypatch.setattr(conv_primitive, "ONE_BY_ONE_MIN_MULTIPLY_ADDS", 0)
    # JAX keeps the vmapped jaxprs of jit-ed functions: traced afresh under this bound,
    # and not left to later tests
    jax.clear_caches()
    request.addfinalizer(jax.clear_caches)
    want, groups = ("taps", 5) if small else (method, 1)
    xs = np.stack([X] * 5) * np.arange(1, 6, dtype=np.float32)[:, None, None, None, None]
    conv = lambda x, w: jconv.conv2d(x, w, method=method, precision="highest")
    ops = bound_ops(jax.vmap(conv), xs, WS)
    assert [(role, name) for role, name, _ in ops] == [("y", want)]
    assert ops[0][2].groups == groups and ops[0][2].o == 4 * groups
    got = jax.vmap(conv)(xs, WS)
    ct = RNG.standard_normal(got.shape[1:]).astype(np.float32)
    grad = jax.vmap(jax.grad(lambda x, w: jnp.vdot(conv(x, w), ct), argnums=1), (0, None))
    assert {(role, name) for role, name, _ in bound_ops(grad, xs, WS[0])} == {
        ("y", method),  # the forward pass's vmapped samples fold into the batch
        ("dw", want),
    }
    grads = grad(xs, WS[0])
    # input gradients with a kernel per sample: dx's output gradient and kernel both vmapped
    dx = jax.vmap(jax.grad(lambda x, w: jnp.vdot(conv(x, w), ct)))
    assert ("dx", want) in {(role, name) for role, name, _ in bound_ops(dx, xs, WS)}
    dxs = dx(xs, WS)
    ref = lambda x, w: jnp.vdot(conv_lax(x, w), ct)
    for k in range(5):
        assert_close(got[k], conv_lax(xs[k], WS[k]))
        assert_close(grads[k], jax.grad(ref, argnums=1)(xs[k], WS[0]))
        assert_close(dxs[k], jax.grad(ref)(xs[k], WS[k]))


@pytest.mark.usefixtures("on_cpu")
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("method", ["winograd", "banded"])
def test_exact_fallback_is_a_library_convolution(method, layout):
    """The exact recomputation behind a guarded result (taken when it is not all finite) is
    one of lax's convolutions in NHWC with an HWIO kernel, whatever the layout: XLA:CPU runs
    that through its convolution library. With an OIHW kernel (or NCHW) inside the lax.cond
    branch, XLA:CPU emitted naive loops instead: 13x slower on ResNet's 14x14 layer with an
    Inf in x, and 5% to 33% of a winograd program's compile time (BENCHMARKS.md, session 6).
    The kernel gradient's fallback (lax's transpose in the kernel) is left as XLA:CPU emits
    it: the library's form would hold kh * kw copies of x in memory reserved for the branch."""
    rng = np.random.default_rng(31)  # arrays on the CPU (the fixture): a CPU program
    x_shape, k_shape = ((2, 10, 10, 8), (3, 3, 8, 16))
    if layout == "NCHW":
        x_shape, k_shape = (2, 8, 10, 10), (16, 8, 3, 3)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)

    def conv(x, w, **kwargs):
        return jconv.conv2d(x, w, layout=layout, method=method, **kwargs)

    def step(x, w):  # the result, and the input gradient ('im2col''s transpose: no conv)
        return jax.grad(lambda x, w: jnp.sum(conv(x, w)))(x, w), conv(x, w, padding="SAME")

    text = jax.jit(step).lower(x, w).compile().as_text()
    convolutions = [line for line in text.splitlines() if " convolution(" in line]
    assert convolutions  # the fallbacks are there, in their branches
    for line in convolutions:
        assert "dim_labels=b01f_01io->b01f" in line, line


@pytest.mark.parametrize("method", ["banded", "winograd"])
@pytest.mark.usefixtures("on_cpu")
@needs_8_cpu_devices
def test_vmapped_axis_on_devices_runs_as_groups(method, monkeypatch, request):
    """Four (sample, kernel) problems vmapped along an axis split over four devices
    (spmd_axis_name) run as four groups, which the devices share, even where they would
    otherwise run one after another (the bound lowered to 0): a lax.map over that axis
    would run every problem on every device. Values and both gradients against lax, each
    laid out along the devices as lax's."""
    monkeypatch.setattr(conv_primitive, "ONE_BY_ONE_MIN_MULTIPLY_ADDS", 0)
    jax.clear_caches()
    request.addfinalizer(jax.clear_caches)
    mesh = cpu_mesh((4,), ("d",), (jax.sharding.AxisType.Auto,))
    on_d = NamedSharding(mesh, PartitionSpec("d"))
    xs = RNG.standard_normal((4, *X.shape)).astype(np.float32)
    ws = WS[:4]
    conv = lambda x, w: jconv.conv2d(x, w, method=method, padding=1, precision="highest")
    loss = lambda x, w: jnp.sum(conv(x, w) ** 2)
    ref_loss = lambda x, w: jnp.sum(conv_lax(x, w, padding=1) ** 2)
    with jax.set_mesh(mesh):
        ops = bound_ops(jax.vmap(conv, spmd_axis_name="d"), xs, ws)
        assert [(role, name, spec.groups) for role, name, spec in ops] == [("y", "taps", 4)]
        xs_d, ws_d = jax.device_put(xs, on_d), jax.device_put(ws, on_d)
        y = jax.jit(jax.vmap(conv, spmd_axis_name="d"))(xs_d, ws_d)
        grads = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), spmd_axis_name="d"))(xs_d, ws_d)
    ref_grads = jax.vmap(jax.grad(ref_loss, argnums=(0, 1)))(xs, ws)
    assert_close(y, jax.vmap(lambda x, w: conv_lax(x, w, padding=1))(xs, ws))
    for got, expected in zip(grads, ref_grads):
        assert_close(got, expected)
    for got in (y, *grads):
        assert got.sharding.spec[:1] == ("d",)
