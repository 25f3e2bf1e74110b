"""The 8 simulated CPU devices of tests/conftest.py, on any machine.

On a GPU machine jax.devices() lists the GPUs (often one); the sharding tests
build their meshes from the CPU's devices instead, and run under the `on_cpu`
fixture so that their references and inputs are on the CPU too.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

CPU_DEVICES = tuple(jax.devices("cpu"))

needs_8_cpu_devices = pytest.mark.skipif(
    len(CPU_DEVICES) < 8, reason="needs the 8 simulated CPU devices of tests/conftest.py"
)

# A sharding test: 8 CPU devices, and everything else on the CPU too (as pytestmark, or
# as decorators of one test).
SHARDING = [needs_8_cpu_devices, pytest.mark.usefixtures("on_cpu")]


def cpu_mesh(shape: tuple[int, ...], names: tuple[str, ...], axis_types=None) -> jax.sharding.Mesh:
    """jax.make_mesh over the first prod(shape) CPU devices."""
    devices = CPU_DEVICES[: math.prod(shape)]
    return jax.make_mesh(shape, names, axis_types, devices=devices)


def on_a_split_batch(conv, x, w):
    """conv(x, w) and the gradients (dx, dw) of sum(conv(x, w)**2), each jitted, with x's
    batch split over the 8 CPU devices in JAX's explicit sharding mode."""
    from jax.sharding import AxisType, PartitionSpec

    loss = lambda x, w: jax.numpy.sum(conv(x, w) ** 2)
    with jax.set_mesh(cpu_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))):
        xs = jax.device_put(x, PartitionSpec("d"))
        return jax.jit(conv)(xs, w), *jax.jit(jax.grad(loss, (0, 1)))(xs, w)


def batch_split_step(conv, devices: int = 2):
    """A jitted shard_map over the first `devices` CPU devices, the batch split: (x, w, ct)
    -> conv(x, w), and its gradients dx and dw for the cotangent ct (dw summed over the
    devices). Auto axes (`jax.sharding.Mesh`), as shard_map wants them."""
    from jax.sharding import PartitionSpec

    mesh = jax.sharding.Mesh(np.array(CPU_DEVICES[:devices]), ("data",))

    def local(x, w, ct):
        y, vjp = jax.vjp(conv, x, w)
        dx, dw = vjp(ct)
        return y, dx, jax.lax.psum(dw, "data")

    specs = (PartitionSpec("data"), PartitionSpec(), PartitionSpec("data"))
    out_specs = (PartitionSpec("data"), PartitionSpec("data"), PartitionSpec())
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=out_specs))


def assert_split_batch_like_lax(conv, x, w, dtype=np.float32, **kwargs) -> None:
    """`on_a_split_batch(conv, x, w)`: y and dx keep the batch split, and y, dx and dw agree,
    within dtype's tolerance, with lax (tests/reference.py's conv_lax with kwargs) on the
    same values in float32."""
    from tests.reference import assert_close, conv_lax

    y, dx, dw = on_a_split_batch(conv, x, w)
    assert y.sharding.spec[0] == "d" and dx.sharding.spec[0] == "d"
    f32 = lambda a: jax.numpy.asarray(a, np.float32)
    ref = lambda x, w: conv_lax(f32(x), f32(w), **kwargs)
    assert_close(y, ref(x, w), dtype)
    loss = lambda x, w: jax.numpy.sum(ref(x, w) ** 2)
    for got, want in zip((dx, dw), jax.grad(loss, (0, 1))(x, w)):
        assert_close(got, want, dtype, scale=float(np.max(np.abs(want))) + 1.0)


def assert_shard_map_like_lax(conv, x, w, ct, dtype=np.float32, **kwargs) -> None:
    """`batch_split_step(conv)` and the same step of lax (conv_lax with kwargs, in float32,
    its result in x's dtype) agree within dtype's tolerance: y, dx and the summed dw."""
    from tests.reference import assert_close, conv_lax

    f32 = lambda a: jax.numpy.asarray(a, np.float32)
    ref = lambda x, w: conv_lax(f32(x), f32(w), **kwargs).astype(x.dtype)
    got = batch_split_step(conv)(x, w, ct)
    want = batch_split_step(ref)(x, w, ct)
    for g, e in zip(got, want):
        assert_close(g, e, dtype, scale=float(np.max(np.abs(f32(e)))) + 1.0)
