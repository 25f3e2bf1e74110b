"""Check method='pallas' against lax at HIGHEST on the bench layers: forward and both gradients.

The interpret-mode tests (tests/test_pallas.py) check the kernels' arithmetic
on small shapes; this checks, on a GPU, that the compiled Triton kernels give
the same answer on every layer of experiments/bench_conv.py's suite. For each
layer and dtype it computes y = conv2d(x, w) and the gradients of <y, ct> with
respect to x and w through jconv.conv2d(method='pallas', precision='highest'),
and the same with lax.conv_general_dilated at HIGHEST on the float32 values of
the same inputs, and reports max |pallas - lax| / max |lax| for each.

    python experiments/check_pallas.py --out runs/check_pallas          # on a GPU
    python experiments/check_pallas.py --layers lenet2 --batch 1        # anywhere (interpret mode)

Exit status 1 if any result is off by more than its dtype's tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from experiments.bench_conv import DTYPES, LAYERS, Layer, environment, layer_arrays

# max |error| / max |lax|: float32 products differ from lax's only in summation order;
# bfloat16 results are rounded once to 8 bits of mantissa (2**-8 = 0.004).
TOLERANCE = {"float32": 1e-4, "bfloat16": 1.5e-2}


@dataclasses.dataclass
class CheckConfig:
    layers: Sequence[str] = tuple(LAYERS)
    dtypes: Sequence[str] = ("float32", "bfloat16")
    batch: int = 4  # correctness does not need the bench's batch sizes
    out: str | None = "runs/check_pallas"
    quiet: bool = False


def _value_and_grads(layer: Layer, method: str):
    @jax.jit
    def run(x, w, ct):
        def conv(x, w):
            return jconv.conv2d(
                x, w, layout="NHWC", method=method, precision="highest", **layer.conv_kwargs
            )

        y, vjp = jax.vjp(conv, x, w)
        return (y, *vjp(ct.astype(y.dtype)))

    return run


def check_layer(layer: Layer, dtype_name: str, batch: int, key: jax.Array) -> dict:
    """Errors of y, dx and dw of one layer in one dtype, relative to lax's largest value."""
    start = time.perf_counter()
    x, w, ct = layer_arrays(layer, batch, DTYPES[dtype_name], "NHWC", key)
    row: dict = {"layer": layer.name, "dtype": dtype_name, "batch": batch}
    try:
        got = _value_and_grads(layer, "pallas")(x, w, ct)
        f32 = [a.astype(jnp.float32) for a in (x, w, ct)]
        expected = _value_and_grads(layer, "xla")(*f32)
        for name, g, e in zip(("y", "dx", "dw"), got, expected):
            g, e = np.asarray(g.astype(jnp.float32)), np.asarray(e)
            row[name] = float(np.max(np.abs(g - e)) / max(float(np.max(np.abs(e))), 1e-30))
        row["ok"] = all(row[k] <= TOLERANCE[dtype_name] for k in ("y", "dx", "dw"))
    except Exception as e:  # recorded, so that one failure does not hide the other layers
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        row["ok"] = False
    row["seconds"] = time.perf_counter() - start
    return row


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['layer']:<10} {r['dtype']:<9} ERROR {r['error']}"
    return (
        f"{r['layer']:<10} {r['dtype']:<9} y {r['y']:.1e}  dx {r['dx']:.1e}  dw {r['dw']:.1e}"
        f"  {'ok' if r['ok'] else 'FAIL'} (tolerance {TOLERANCE[r['dtype']]:.0e})"
    )


def run(config: CheckConfig) -> dict:
    for name in config.layers:
        if name not in LAYERS:
            raise ValueError(f"unknown layer {name!r}; choose from {list(LAYERS)}")
    key = jax.random.key(int(time.time()))  # fresh inputs on every run
    rows: list[dict] = []
    result = {"environment": environment(), "tolerance": TOLERANCE, "rows": rows}
    for name in config.layers:
        for dtype_name in config.dtypes:
            key, sub = jax.random.split(key)
            rows.append(check_layer(LAYERS[name], dtype_name, config.batch, sub))
            if not config.quiet:
                print(format_row(rows[-1]), flush=True)
            if config.out:  # after every row: a run cut short keeps what it found
                out = pathlib.Path(config.out)
                out.mkdir(parents=True, exist_ok=True)
                (out / "check.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = CheckConfig()
    p.add_argument("--layers", nargs="+", default=list(d.layers), choices=list(LAYERS))
    p.add_argument("--dtypes", nargs="+", default=list(d.dtypes), choices=list(DTYPES))
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--out", default=d.out)
    args = p.parse_args(argv)
    result = run(CheckConfig(**vars(args)))
    return 0 if all(r["ok"] for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
