"""One process of tests/test_distributed.py: 4 CPU devices of an 8-device mesh over 2 processes.

    python tests/_distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.npz

Every process runs the same program (JAX's multi-controller model): it joins
the others through jax.distributed.initialize, builds the global mesh, runs
jconv.sharding.sharded_conv2d with every strategy and one data-parallel training step,
and gathers the results; process 0 writes them to OUT.npz for the test to
compare with a single-process run.
"""

from __future__ import annotations

import os
import sys

import numpy as np

LOCAL_DEVICES = 4
KW = {"padding": "SAME", "precision": "highest", "method": "xla"}
MESH_SHAPES = {"flat": (8,), "grid": (2, 4)}
# name -> (mesh, strategy): every strategy, and a combination on the 2 x 4 mesh
RUNS = {
    "batch": ("flat", "batch"),
    "out_channels": ("flat", "out_channels"),
    "in_channels": ("flat", "in_channels"),
    "spatial": ("flat", "spatial"),
    "batch_x_out_channels": ("grid", {"batch": "a", "out_channels": "b"}),
}


def problem() -> dict[str, np.ndarray]:
    """The inputs, the same in every process (and in the test)."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    return {
        "x": rng.standard_normal((8, 8, 16, 8), f32),
        "kernel": rng.standard_normal((8, 8, 3, 3), f32),
        "bias": rng.standard_normal((8,), f32),
        "batch_x": rng.standard_normal((16, 3, 8, 8), f32),
        "batch_y": rng.standard_normal((16, 2), f32),
        "w1": rng.standard_normal((4, 3, 3, 3), f32),
        "w2": rng.standard_normal((2, 4, 3, 3), f32),
    }


def loss_fn(params, batch):
    """conv-relu-conv, global average pool, squared error."""
    import jax

    import jconv

    h = jax.nn.relu(jconv.conv2d(batch["x"], params["w1"], **KW))
    h = jconv.conv2d(h, params["w2"], **KW)
    return ((h.mean(axis=(2, 3)) - batch["y"]) ** 2).mean()


def optimizer():
    import optax

    return optax.sgd(0.1, momentum=0.9)


def run_all(meshes) -> dict[str, np.ndarray]:
    """Every run on `meshes` ({'flat': 8-device mesh, 'grid': 2 x 4}); results as NumPy."""
    import jax
    from jax.experimental import multihost_utils

    import jconv

    p = problem()
    out = {}
    for name, (mesh, strategy) in RUNS.items():
        y = jconv.sharding.sharded_conv2d(
            p["x"], p["kernel"], p["bias"], mesh=meshes[mesh], strategy=strategy, **KW
        )
        out[name] = np.asarray(multihost_utils.process_allgather(y, tiled=True))
    opt = optimizer()
    params = {"w1": p["w1"], "w2": p["w2"]}
    step = jconv.sharding.data_parallel_step(loss_fn, opt, mesh=meshes["flat"])
    params, _, loss = step(params, opt.init(params), {"x": p["batch_x"], "y": p["batch_y"]})
    for k, v in params.items():
        out[f"step_{k}"] = np.asarray(multihost_utils.process_allgather(v, tiled=True))
    out["step_loss"] = np.asarray(multihost_utils.process_allgather(loss, tiled=True))
    out["devices"] = np.array([jax.device_count(), jax.local_device_count()])
    return out


def main(process_id: int, num_processes: int, port: int, path: str) -> None:
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_num_cpu_devices", LOCAL_DEVICES)
    # Cross-process collectives on CPU go through gloo, JAX's default, named here so that
    # the test does not depend on how this JAX is configured.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        f"localhost:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
    from jax.experimental import multihost_utils

    meshes = {
        k: jax.make_mesh(s, ("d",) if len(s) == 1 else ("a", "b")) for k, s in MESH_SHAPES.items()
    }
    out = run_all(meshes)
    if process_id == 0:
        np.savez(path, **out)
    multihost_utils.sync_global_devices("jconv test done")
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
