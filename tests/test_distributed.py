"""Many hosts for real: 2 processes on localhost, 4 CPU devices each, one 8-device mesh.

Each process runs tests/_distributed_worker.py under jax.distributed.initialize
(JAX's own coordinator on a free local port, gloo for the CPU collectives);
their results must equal this single process's run on its 8 simulated devices.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import jconv
from tests import _distributed_worker as worker
from tests._cpu import needs_8_cpu_devices

WORKER = Path(worker.__file__)
ROOT = WORKER.resolve().parent.parent  # the checkout whose jconv the workers must import
TIMEOUT_S = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(out: Path) -> list[str]:
    """Run the 2 workers to the end; their combined output, for a failure message."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(worker.LOCAL_DEVICES))
    # This checkout's jconv, as pytest's pythonpath gives the test itself, not an installed one.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), "2", str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs, failed = [], False
    for i, p in enumerate(procs):
        try:
            text, _ = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            text, _ = p.communicate()
            failed = True
        failed |= p.returncode != 0
        logs.append(f"--- process {i} (exit {p.returncode}) ---\n{text[-3000:]}")
    if failed:
        pytest.fail("distributed workers failed:\n" + "\n".join(logs))
    return logs


@needs_8_cpu_devices
@pytest.mark.usefixtures("on_cpu")
def test_two_processes_match_one(tmp_path):
    out = tmp_path / "results.npz"
    launch(out)
    got = dict(np.load(out))
    assert list(got["devices"]) == [8, 4]  # 8 devices in all, 4 in each process

    # against one process on one device: conv2d, and the same step on the whole batch
    p = worker.problem()
    ref = jconv.conv2d(p["x"], p["kernel"], p["bias"], **worker.KW)
    for name in worker.RUNS:
        np.testing.assert_allclose(got[name], ref, rtol=2e-5, atol=1e-4, err_msg=name)
    opt = worker.optimizer()
    params = {"w1": p["w1"], "w2": p["w2"]}
    batch = {"x": p["batch_x"], "y": p["batch_y"]}
    loss, grads = jax.value_and_grad(worker.loss_fn)(params, batch)
    updates, _ = opt.update(grads, opt.init(params), params)
    for k, v in optax.apply_updates(params, updates).items():
        np.testing.assert_allclose(got[f"step_{k}"], v, rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(got["step_loss"], loss, rtol=1e-5)
