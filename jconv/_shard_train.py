"""Data-parallel training steps: the same step in shard_map form and in pmap form.

Data parallelism is the 'batch' strategy applied to a whole network: every
device holds the parameters, takes its slice of the batch, and the gradients
are averaged across devices before the optimizer step, so that every device
makes the same update as one device would on the whole batch.

- `data_parallel_step` (shard_map): parameters replicated, the batch split
  over one mesh axis; works on one host or many (jax.distributed).
- `pmap_data_parallel_step` (jax.pmap): the same step for code bases that
  still use pmap, with parameters stacked along a leading device axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jconv._sharding import place

PyTree = Any  # parameters, optimizer state or a batch: a pytree of arrays
# (params, batch) -> mean loss over the batch; with has_aux, (mean loss, aux)
LossFn = Callable[[PyTree, PyTree], Any]
# (params, opt_state, batch) -> (params, opt_state, loss), with has_aux (..., loss, aux)
Step = Callable[[PyTree, PyTree, PyTree], tuple[Any, ...]]


def _check_axis(mesh: Mesh, axis: Any) -> Any:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    axis = mesh.axis_names[0] if axis is None else axis
    if axis not in mesh.axis_names:
        raise ValueError(f"unknown mesh axis {axis!r}: the mesh's axes are {mesh.axis_names}")
    return axis


def _check_batch(batch: PyTree, devices: int, axis: Any) -> None:
    for leaf in jax.tree.leaves(batch):
        n = jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
        if n is None or n % devices:
            raise ValueError(
                f"data parallel: the batch size ({n}, of a batch leaf of shape "
                f"{jnp.shape(leaf)}) is not divisible by the size ({devices}) of mesh axis "
                f"{axis!r}"
            )


def data_parallel_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    mesh: Mesh,
    axis: Any = None,
    has_aux: bool = False,
) -> Step:
    """A jitted training step, data parallel by shard_map over mesh axis `axis` (default: first).

    Returns step(params, opt_state, batch) -> (params, opt_state, loss):
    params and opt_state replicated, every leaf of `batch` split over `axis`
    along its leading dimension; loss is the mean of loss_fn over the whole
    batch, and the update the one a single device would make on it.
    With has_aux, loss_fn returns (loss, aux) as for jax.value_and_grad, and the
    step (params, opt_state, loss, aux): aux is averaged over the devices as the
    loss is, so it too must be a mean over the examples (an accuracy, say).

        # params, opt_state: replicated        batch leaves: f[B/D, ...]
        # local grads of pmean(loss_fn(params, batch_block)) -> summed by shard_map
        #   (params are replicated, so their cotangents are psum'd): the global mean gradient
    """
    axis = _check_axis(mesh, axis)

    def local(params: PyTree, opt_state: PyTree, batch: PyTree):
        # batch leaves: f[B/D, ...]; params, opt_state: the whole of them
        def global_loss(p: PyTree) -> Any:
            return jax.lax.pmean(loss_fn(p, batch), axis)  # (loss, aux) alike

        value, grads = jax.value_and_grad(global_loss, has_aux=has_aux)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        values = value if has_aux else (value,)
        return optax.apply_updates(params, updates), opt_state, *values

    mapped = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(axis)), out_specs=P())

    @jax.jit
    def run(params: PyTree, opt_state: PyTree, batch: PyTree):
        params, opt_state = jax.tree.map(lambda a: place(a, mesh, P()), (params, opt_state))
        batch = jax.tree.map(lambda a: place(a, mesh, P(axis)), batch)
        return mapped(params, opt_state, batch)

    def step(params: PyTree, opt_state: PyTree, batch: PyTree):
        _check_batch(batch, mesh.shape[axis], axis)
        return run(params, opt_state, batch)

    return step


def pmap_data_parallel_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    axis_name: Any = "batch",
    devices: Any = None,
    has_aux: bool = False,
) -> Step:
    """The same data-parallel step as a jax.pmap, for code bases that still use pmap.

    Returns step(params, opt_state, batch) -> (params, opt_state, loss), where
    every leaf carries a leading device axis: params and opt_state stacked
    copies (jconv.sharding.replicate makes them), batch leaves shaped (D, B/D, ...).
    has_aux as for data_parallel_step: (params, opt_state, loss, aux), aux averaged.

        # per device: params, opt_state: one copy   batch leaves: f[B/D, ...]
        # grads = pmean(grad(loss_fn)(params, batch_block)) over axis_name
    """

    def local(params: PyTree, opt_state: PyTree, batch: PyTree):
        value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, batch)
        grads, value = jax.lax.pmean((grads, value), axis_name)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        values = value if has_aux else (value,)
        return optax.apply_updates(params, updates), opt_state, *values

    return jax.pmap(local, axis_name=axis_name, devices=devices)


def replicate(tree: PyTree, devices: int | None = None) -> PyTree:
    """Stack `devices` (default: all local devices) copies of every leaf, for pmap.

    The copies are a read-only NumPy view on the host (`np.broadcast_to`), which pmap
    sends to its devices one copy each: no device holds all of them at once, and no
    leaf's shape costs a compilation."""
    n = jax.local_device_count() if devices is None else devices
    return jax.tree.map(lambda a: np.broadcast_to(np.asarray(a), (n, *np.shape(a))), tree)


def split_batch(batch: PyTree, devices: int | None = None) -> PyTree:
    """Reshape every leaf (B, ...) to (devices, B / devices, ...), for pmap."""
    n = jax.local_device_count() if devices is None else devices
    _check_batch(batch, n, "pmap devices")
    return jax.tree.map(lambda a: jnp.reshape(a, (n, -1, *jnp.shape(a)[1:])), batch)
