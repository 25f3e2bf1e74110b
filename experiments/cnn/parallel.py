"""Where a run computes: its devices, the mesh, and how batches and states get onto them.

Data parallel over every device along the 'data' mesh axis, by default with
jax.shard_map (the parameters replicated, each device a slice of the batch),
with `pmap` by jax.pmap (the parameters stacked, one copy per device); with
model parallelism a ('data', 'model') mesh whose 'model' axis the conv layers
split (models.ShardedConv). Checkpoints, evaluation and the run's summary
always see the whole state, replicated on the mesh: `for_step` and `whole`
convert to and from the layout the training step takes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jconv.sharding import replicate

from .models import DATA, MODEL

PyTree = Any  # parameters, optimizer state: a pytree of arrays


@dataclasses.dataclass(frozen=True)
class Parallelism:
    devices: tuple[jax.Device, ...]
    pmap: bool  # jax.pmap instead of jax.shard_map
    mesh: Mesh  # ('data',), or ('data', 'model') with model parallelism

    @classmethod
    def build(cls, devices: tuple[jax.Device, ...], *, pmap: bool, model_devices: int):
        """A 'data' mesh over `devices`; with model_devices > 1, ('data', 'model')."""
        if model_devices > 1:
            shape, names = (len(devices) // model_devices, model_devices), (DATA, MODEL)
        else:
            shape, names = (len(devices),), (DATA,)
        axis_types = (jax.sharding.AxisType.Auto,) * len(names)
        return cls(devices, pmap, jax.make_mesh(shape, names, axis_types, devices=devices))

    @property
    def local_device_count(self) -> int:
        """How many of the run's devices this process drives (not JAX's default backend's:
        a run may be on the CPU of a GPU machine)."""
        return sum(d.process_index == jax.process_index() for d in self.devices)

    @property
    def data_size(self) -> int:
        """Into how many slices each batch is split."""
        return self.mesh.shape[DATA]

    @property
    def model_parallel(self) -> bool:
        return MODEL in self.mesh.shape

    def describe(self) -> str:
        if self.pmap:
            return "pmap"
        if self.model_parallel:
            model = self.mesh.shape[MODEL]
            return f"jit + sharded_conv2d, mesh data={self.data_size} x model={model}"
        return "shard_map"

    def batch(self, *arrays: np.ndarray) -> list[jax.Array | np.ndarray]:
        """A global batch (every process holds all of it), split as the training step takes
        it: global arrays on the mesh, or under pmap this process's rows [D_local, B/D, ...]."""
        if not self.pmap:
            return self.on_mesh(*arrays)
        n, local = len(self.devices), self.local_device_count
        start = jax.process_index() * local
        return [a.reshape(n, -1, *a.shape[1:])[start : start + local] for a in arrays]

    def on_mesh(self, *arrays: np.ndarray) -> list[jax.Array]:
        """Global arrays on the mesh, split along DATA (what evaluation takes, under jit)."""
        sharding = NamedSharding(self.mesh, P(DATA))
        return [jax.make_array_from_callback(a.shape, sharding, a.__getitem__) for a in arrays]

    def replicated(self, tree: PyTree) -> PyTree:
        """tree's arrays, whole on every device of the mesh."""
        return jax.device_put(tree, NamedSharding(self.mesh, P()))

    def for_step(self, tree: PyTree) -> PyTree:
        """A whole state, laid out as the training step takes it (pmap: stacked copies)."""
        if self.pmap:
            return replicate(jax.device_get(tree), self.local_device_count)
        return tree

    def whole(self, tree: PyTree) -> PyTree:
        """The training step's state back as whole arrays, replicated on the mesh."""
        if self.pmap:  # every device holds the same copy: take the first, via the host
            return self.replicated(
                jax.tree.map(lambda a: np.asarray(a.addressable_data(0))[0], tree)
            )
        return tree
