"""Check method='pallas' against lax at HIGHEST on the bench layers: forward and both gradients.

The interpret-mode tests (tests/test_pallas.py) check the kernels' arithmetic
on small shapes; this checks, on a GPU, that the compiled Triton kernels give
the same answer on every layer of experiments/bench_conv.py's suite. For each
layer and dtype it computes y = conv2d(x, w) and the gradients of <y, ct> with
respect to x and w through jconv.conv2d(method='pallas', precision='highest'),
and reports max |pallas - reference| / max |reference| for each.

The reference is lax.conv_general_dilated at HIGHEST on the float32 values of
the same inputs, run on the host's CPU. On a GPU, lax is cuDNN, whose algorithm
for each product XLA's autotuner picks per shape: a reference computed there
could be the wrong side of a disagreement. So lax on the device is compared
with the host's reference too (lax_y, lax_dx, lax_dw), and a product that is
off also records where its largest error is and how many values exceed the
tolerance: a failure says which GPU result left the CPU's, and where. And
'pallas' runs twice more on the same inputs: its results must be the same to the
bit (repeatable), as the kernel gradient's serial splits promise (they add in a
fixed order; BlockConfig.serial), and as its partial sums are.

    python -m experiments.check_pallas --out runs/check_pallas          # on a GPU
    python -m experiments.check_pallas --layers lenet2 --batch 1        # anywhere (interpret mode)

Run it as a module from the repository root, as above: `experiments` is a package
(this script imports experiments.bench_conv), and the root holds jconv.

Exit status 1 if any result of 'pallas' is off by more than its dtype's tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import jconv
from experiments.bench_conv import DTYPES, LAYERS, Layer, environment, layer_arrays
from experiments.tune_pallas import layer_geometry
from jconv import _pallas_triton
from jconv._pallas_tuning import config_for

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


def _host() -> jax.Device | None:
    """The CPU that computes the reference (None where JAX runs without a CPU backend)."""
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        return None


def _difference(got: jax.Array, expected: np.ndarray) -> tuple[np.ndarray, float]:
    """|got - expected| in float64, and max |expected| (at least a tiny positive number)."""
    diff = np.abs(np.asarray(got.astype(jnp.float32), np.float64) - expected)
    return diff, max(float(np.max(np.abs(expected))), 1e-30)


def relative_error(got: jax.Array, expected: np.ndarray) -> float:
    """max |got - expected| / max |expected|."""
    diff, scale = _difference(got, expected)
    return float(np.max(diff)) / scale


def where_off(got: jax.Array, expected: np.ndarray, tolerance: float) -> dict:
    """Where got is furthest from expected, and how many of its values exceed the tolerance."""
    diff, scale = _difference(got, expected)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return {
        "index": [int(i) for i in worst],
        "over": int(np.sum(diff > tolerance * scale)),
        "size": int(diff.size),
    }


# Settings a product that is off is run again with, one change each from its own:
# which change moves the error says which part of the kernel to look at.
VARIANTS = {
    "split_k=1": dict(split_k=1),
    "num_stages=1": dict(num_stages=1),
    "blocks 32x32x16, 4 warps": dict(block_m=32, block_n=32, block_k=16, num_warps=4),
}
KERNELS = {  # product -> (kernel's name in the primitive, its call on (x, w, ct))
    "y": ("y", lambda x, w, ct, geo, **kw: _pallas_triton.forward(x, w, None, geo, **kw)),
    "dx": ("x", lambda x, w, ct, geo, **kw: _pallas_triton.input_grad(ct, w, geo, **kw)),
    "dw": ("w", lambda x, w, ct, geo, **kw: _pallas_triton.kernel_grad(x, ct, geo, **kw)),
}


def _on_gpu(x) -> bool:
    return isinstance(x, jax.Array) and all(d.platform == "gpu" for d in x.devices())


def variant_errors(layer: Layer, name: str, arrays, expected: np.ndarray) -> dict:
    """The error of product `name` computed with each of VARIANTS' changes to its settings."""
    x, w, ct = arrays
    geo = layer_geometry(layer, x.shape[0])
    product, call = KERNELS[name]
    base = config_for(product, geo, x.dtype)
    errors = {"settings": str(base)}
    for label, change in VARIANTS.items():
        config = dataclasses.replace(base, **change)
        kw = dict(config=config, out_dtype=x.dtype, precision="highest")
        kw["interpret"] = not _on_gpu(x)  # the arrays' device, not the default backend
        try:
            got = jax.jit(lambda x, w, ct, kw=kw: call(x, w, ct, geo, **kw))(x, w, ct)
            errors[label] = relative_error(got, expected)
        except Exception as e:  # a setting the card cannot compile: say so, try the next
            errors[label] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return errors


def check_layer(layer: Layer, dtype_name: str, batch: int, key: jax.Array) -> dict:
    """Errors of y, dx and dw of one layer in one dtype, relative to the reference's largest.

    y, dx, dw: 'pallas' against lax on the host's CPU; lax_y, lax_dx, lax_dw: lax on
    the device against the same (absent where the device is that CPU).
    """
    start = time.perf_counter()
    x, w, ct = layer_arrays(layer, batch, DTYPES[dtype_name], "NHWC", key)
    row: dict = {"layer": layer.name, "dtype": dtype_name, "batch": batch}
    names = ("y", "dx", "dw")
    tolerance = TOLERANCE[dtype_name]
    try:
        pallas = _value_and_grads(layer, "pallas")
        got = pallas(x, w, ct)
        again = [pallas(x, w, ct) for _ in range(2)]
        row["repeatable"] = all(
            np.array_equal(np.asarray(a), np.asarray(b)) for run in again for a, b in zip(got, run)
        )
        f32 = [a.astype(jnp.float32) for a in (x, w, ct)]
        lax = _value_and_grads(layer, "xla")
        host = _host()
        row["reference"] = "lax on the device" if host is None else "lax on the CPU"
        on_host = jax.device_put(f32, host) if host is not None else f32
        expected = [np.asarray(e, np.float64) for e in lax(*on_host)]
        for name, g, e in zip(names, got, expected):
            row[name] = relative_error(g, e)
            if row[name] > tolerance:
                row[f"where_{name}"] = where_off(g, e, tolerance)
                row[f"variants_{name}"] = variant_errors(layer, name, (x, w, ct), e)
        if host is not None and x.devices() != {host}:  # cuDNN against the same reference
            for name, g, e in zip(names, lax(*f32), expected):
                row[f"lax_{name}"] = relative_error(g, e)
        row["ok"] = all(row[k] <= tolerance for k in names) and row["repeatable"]
    except Exception as e:  # recorded, so that one failure does not hide the other layers
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        row["ok"] = False
    row["seconds"] = time.perf_counter() - start
    return row


def format_row(r: dict) -> str:
    if "error" in r:
        return f"{r['layer']:<10} {r['dtype']:<9} ERROR {r['error']}"
    line = (
        f"{r['layer']:<10} {r['dtype']:<9} y {r['y']:.1e}  dx {r['dx']:.1e}  dw {r['dw']:.1e}"
        f"  {'ok' if r['ok'] else 'FAIL'} (tolerance {TOLERANCE[r['dtype']]:.0e})"
    )
    if not r.get("repeatable", True):
        line += "  NOT REPEATABLE (runs on the same inputs differ)"
    if "lax_y" in r:
        line += f"  device lax: y {r['lax_y']:.1e}  dx {r['lax_dx']:.1e}  dw {r['lax_dw']:.1e}"
    for name in ("y", "dx", "dw"):
        if f"where_{name}" in r:
            off = r[f"where_{name}"]
            line += f"\n    {name}: largest error at {off['index']}, "
            line += f"{off['over']} of {off['size']} values over"
            for label, err in r.get(f"variants_{name}", {}).items():
                line += f"\n      {label}: {err if isinstance(err, str) else f'{err:.1e}'}"
    return line


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
