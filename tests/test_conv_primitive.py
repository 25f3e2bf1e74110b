"""jconv/_conv_primitive.py: the members it binds under vmap and transposition.

Values under every transformation are compared with lax in
tests/test_transformations.py; here, which member and lowering run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jconv
from jconv._conv_primitive import conv_p
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


@pytest.mark.parametrize("method", ["banded", "winograd"])
def test_vmapped_kernels_fold_into_groups(method):
    """Five kernels at once are five groups of one convolution, run by 'taps'."""
    ops = bound_ops(jax.vmap(lambda w: jconv.conv2d(X, w, method=method)), WS)
    assert [(role, name) for role, name, _ in ops] == [("y", "taps")]
    assert ops[0][2].groups == 5 and ops[0][2].o == 20
    got = jax.vmap(lambda w: jconv.conv2d(X, w, method=method, precision="highest"))(WS)
    for k in range(5):
        assert_close(got[k], conv_lax(X, WS[k]))


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
