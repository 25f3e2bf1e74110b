"""Benchmark: jconv.conv2d with each method against lax.conv_general_dilated.

Why a script and not a test: speed depends on the machine, so it is measured
here and recorded in BENCHMARKS.md, never asserted in CI. Every compared pair
is measured in the same run, interleaved repeat by repeat, so that a ratio is
never a comparison across runs or across a change in machine load.

Timing follows the device tool's method: compile and warm up first, then queue
`calls` calls before a single block_until_ready, and take the median over
`repeats` such batches. Inputs are fresh normal random numbers per layer.

    python experiments/bench_conv.py                       # the whole suite
    python experiments/bench_conv.py --layers lesson lenet2 --dtypes float32 \
        --methods auto xla --directions fwd
    python experiments/bench_conv.py --methods pallas xla --dtypes bfloat16 \
        --pallas-table runs/tune_pallas/table.json      # on a GPU, with a tuned table

'pallas' (jconv's Triton kernel) is timed only when asked for: off a GPU it runs
in Pallas's interpret mode, far too slow for the suite's shapes.

The default methods: on a CPU 'auto', 'taps', 'im2col' and lax; on a GPU or TPU,
for each layer, 'auto', the lowering each platform's rule names for it (the CPU's
included: the one to beat lax before 'auto' may pick it there) and lax.

Importable: ``run(BenchConfig(...))`` returns the rows it printed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

import jconv


class Layer(NamedTuple):
    """One convolution layer of the suite (input size before padding)."""

    name: str
    c: int  # input channels
    o: int  # output channels
    k: int  # square kernel size
    hw: int  # square input size
    stride: int
    padding: str | int
    groups: int
    batch_cpu: int  # batch size on a CPU
    batch_gpu: int  # batch size on an accelerator
    what: str
    transposed: bool = False  # a transposed convolution (conv_transpose2d, torch's arguments)

    @property
    def conv_kwargs(self) -> dict:
        """conv2d's (or conv_transpose2d's) keyword arguments (besides layout and method)."""
        return {"stride": self.stride, "padding": self.padding, "groups": self.groups}

    def kernel_shape(self, layout: str) -> tuple[int, int, int, int]:
        """conv2d's kernel (O, C/g, k, k) / (k, k, C/g, O); transposed, torch's forward
        kernel (C, O/g, k, k) / (k, k, O/g, C)."""
        a, b = (
            (self.c, self.o // self.groups) if self.transposed else (self.o, self.c // self.groups)
        )
        return (a, b, self.k, self.k) if layout == "NCHW" else (self.k, self.k, b, a)


SUITE = (
    Layer("lesson", 100, 100, 5, 68, 1, "VALID", 1, 4, 64, "the lesson's layer: 64x64 output"),
    Layer("resnet56", 64, 64, 3, 56, 1, "SAME", 1, 2, 64, "ResNet-50 3x3, 56x56"),
    Layer("resnet28", 128, 128, 3, 28, 1, "SAME", 1, 4, 64, "ResNet-50 3x3, 28x28"),
    Layer("resnet14", 256, 256, 3, 14, 1, "SAME", 1, 8, 64, "ResNet-50 3x3, 14x14"),
    Layer("resnet7", 512, 512, 3, 7, 1, "SAME", 1, 16, 256, "ResNet-50 3x3, 7x7"),
    Layer("conv1x1", 256, 64, 1, 56, 1, "VALID", 1, 2, 64, "ResNet-50 1x1 reduce, 56x56"),
    Layer("lenet1", 1, 6, 5, 28, 1, 2, 1, 256, 1024, "LeNet conv1: 28x28 output"),
    Layer("lenet2", 6, 16, 5, 14, 1, "VALID", 1, 256, 1024, "LeNet conv2: 10x10 output"),
    Layer("depthwise", 128, 128, 3, 56, 1, "SAME", 128, 4, 64, "depthwise 3x3, 56x56"),
    Layer("stride2", 64, 128, 3, 56, 2, "SAME", 1, 4, 64, "3x3 stride 2, 56 -> 28"),
    Layer("unet_up", 128, 64, 2, 32, 2, 0, 1, 4, 64, "U-Net 2x2 up, 32 -> 64", True),
    Layer("dcgan", 256, 128, 4, 16, 2, 1, 1, 8, 128, "DCGAN 4x4 s2 up, 16 -> 32", True),
)
LAYERS = {layer.name: layer for layer in SUITE}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DIRECTIONS = ("fwd", "fwd+bwd")
BASELINE = "xla"
CPU_METHODS = ("auto", "taps", "im2col", BASELINE)  # the default on a CPU


@dataclasses.dataclass
class BenchConfig:
    layers: Sequence[str] = tuple(LAYERS)
    dtypes: Sequence[str] = ("float32", "bfloat16")
    methods: Sequence[str] | None = None  # None: `default_methods`, per layer and backend
    directions: Sequence[str] = DIRECTIONS
    layout: str = "NHWC"
    batch: int | None = None  # None: the layer's batch for this backend
    repeats: int = 7  # median over this many batches of calls
    calls: int = 0  # calls queued per batch; 0: enough for about `target_s` seconds
    target_s: float = 0.2
    torch: bool = True  # also time torch.nn.functional.conv2d when torch is installed
    out: str | None = "runs/bench_conv"  # where bench.json and bench.csv go (None: nowhere)
    quiet: bool = False
    pallas_table: str | None = None  # tune_pallas.py's table.json for 'pallas' (None: jconv's)


def _check_config(config: BenchConfig) -> None:
    for name, given, allowed in [
        ("layer", config.layers, LAYERS),
        ("dtype", config.dtypes, DTYPES),
        ("method", config.methods or (), jconv.METHODS),
        ("direction", config.directions, DIRECTIONS),
    ]:
        unknown = [g for g in given if g not in allowed]
        if unknown:
            raise ValueError(f"unknown {name} {unknown}; choose from {list(allowed)}")
    if config.layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {config.layout!r}")


def layer_arrays(layer: Layer, batch: int, dtype: Any, layout: str, key: jax.Array):
    """Fresh random x, kernel and output cotangent for a layer, in `layout`'s orders."""
    kx, kw, kc = jax.random.split(key, 3)
    if layout == "NCHW":
        x_shape = (batch, layer.c, layer.hw, layer.hw)
    else:
        x_shape = (batch, layer.hw, layer.hw, layer.c)
    k_shape = layer.kernel_shape(layout)
    x = jax.random.normal(kx, x_shape, dtype)
    w = (jax.random.normal(kw, k_shape, jnp.float32) / (layer.k * (layer.c**0.5))).astype(dtype)
    y_shape = jax.eval_shape(lambda x, w: conv(layer, layout, BASELINE, x, w), x, w).shape
    ct = jax.random.normal(kc, y_shape, dtype)
    return x, w, ct


def conv(layer: Layer, layout: str, method: str, x: jax.Array, w: jax.Array) -> jax.Array:
    fn = jconv.conv_transpose2d if layer.transposed else jconv.conv2d
    return fn(x, w, layout=layout, method=method, **layer.conv_kwargs)


def conv2d_arguments(layer: Layer, x_shape, w_shape, layout: str) -> tuple[tuple, dict]:
    """The conv2d that runs the layer: (kernel shape, keyword arguments); for a transposed
    layer, the one conv_transpose2d hands its work to (input dilation, crops)."""
    if not layer.transposed:
        return tuple(w_shape), dict(layer.conv_kwargs)
    from jconv._checks import check_transpose_args
    from jconv._conv_transpose import transposed_kernel

    t = check_transpose_args(
        x_shape, w_shape, output_padding=0, dilation=1, layout=layout, transpose_kernel=True,
        **layer.conv_kwargs,
    )  # fmt: skip
    kernel = jax.eval_shape(
        lambda w: transposed_kernel(w, layer.groups, layout),
        jax.ShapeDtypeStruct(w_shape, jnp.float32),
    ).shape
    return kernel, dict(padding=t.pads, groups=layer.groups, input_dilation=t.input_dilation)


def make_step(layer: Layer, layout: str, method: str, direction: str) -> Callable:
    """A jitted (x, w, ct) -> output: the forward conv, or its value and both gradients."""
    if direction == "fwd":
        return jax.jit(lambda x, w, ct: conv(layer, layout, method, x, w))

    def loss(x, w, ct):
        return jnp.vdot(conv(layer, layout, method, x, w).astype(jnp.float32), ct)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _torch_step(layer: Layer, layout: str, direction: str, x, w, ct):
    """The same layer in torch.nn.functional.conv2d (channels_last for NHWC), or None."""
    try:
        import numpy as np
        import torch
    except ImportError:
        return None
    tdt = {jnp.float32: torch.float32, jnp.bfloat16: torch.bfloat16}[x.dtype.type]
    cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"

    def to(a):
        return torch.from_numpy(np.asarray(a.astype(jnp.float32))).to(device=device, dtype=tdt)

    if layout == "NHWC":
        tx = to(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        tw = to(w).permute(3, 2, 0, 1).contiguous()
        tct = to(ct).permute(0, 3, 1, 2)
    else:
        tx, tw, tct = to(x), to(w), to(ct)
    pad = layer.padding if isinstance(layer.padding, int) else layer.padding.lower()
    if pad == "same" and layer.stride > 1:  # torch refuses 'same' at stride > 1
        return None
    torch_conv = (
        torch.nn.functional.conv_transpose2d if layer.transposed else torch.nn.functional.conv2d
    )

    def fwd():
        return torch_conv(tx, tw, stride=layer.stride, padding=pad, groups=layer.groups)

    if direction == "fwd":

        def step():
            with torch.no_grad():
                return fwd()

    else:
        tx.requires_grad_(True)
        tw.requires_grad_(True)

        def step():
            tx.grad = tw.grad = None
            torch.autograd.backward(fwd(), tct)
            return tw.grad

    step.sync = (lambda _: torch.cuda.synchronize()) if cuda else (lambda _: None)
    return step


def _time_batch(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call: `calls` calls queued, then one block (fn.sync for torch)."""
    sync = getattr(fn, "sync", jax.block_until_ready)
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / calls


def _compile(step: Callable, *args) -> tuple[Callable, int | None]:
    """Compile once; return the executable and its peak bytes from XLA's memory analysis.

    Peak = arguments + outputs + temporaries of the compiled program (None when the
    backend reports nothing).
    """
    compiled = step.lower(*args).compile()
    try:
        stats = compiled.memory_analysis()
        peak = int(
            stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
        )
    except Exception:  # some backends report no memory analysis
        peak = None
    return compiled, peak


def bench_case(
    layer: Layer, dtype_name: str, direction: str, config: BenchConfig, key: jax.Array
) -> list[dict]:
    """Time every method (and torch) on one layer, dtype and direction, interleaved."""
    platform = lowering_platform()
    batch = config.batch or (layer.batch_cpu if platform == "cpu" else layer.batch_gpu)
    x, w, ct = layer_arrays(layer, batch, DTYPES[dtype_name], config.layout, key)
    k_shape, kwargs = conv2d_arguments(layer, x.shape, w.shape, config.layout)
    flops = jconv.conv2d_flops(x.shape, k_shape, layout=config.layout, **kwargs)
    flops *= 1 if direction == "fwd" else 3  # backward: one conv for dx, one for dw
    rules = auto_rules(layer, x, w, config.layout)
    phase_methods = chosen(rules, "cpu", layer, x, w, config.layout).split("/")
    methods = config.methods or default_methods(rules, platform, phase_methods)
    methods = list(dict.fromkeys([*methods, BASELINE]))
    fns, peaks = {}, {}
    for m in methods:
        compiled, peaks[m] = _compile(make_step(layer, config.layout, m, direction), x, w, ct)
        fns[m] = functools.partial(compiled, x, w, ct)
    if config.torch:
        torch_fn = _torch_step(layer, config.layout, direction, x, w, ct)
        if torch_fn is not None:
            fns["torch"], peaks["torch"] = torch_fn, None
    calls = {}
    for m, fn in fns.items():  # compile, warm up, size the batches
        per_call = _time_batch(fn, 1)
        per_call = min(per_call, _time_batch(fn, 1))
        calls[m] = config.calls or max(1, min(100, round(config.target_s / max(per_call, 1e-6))))
    times: dict[str, list[float]] = {m: [] for m in fns}
    for _ in range(config.repeats):
        for m, fn in fns.items():
            times[m].append(_time_batch(fn, calls[m]))
    base = statistics.median(times[BASELINE])
    rows = []
    for m in fns:
        t = statistics.median(times[m])
        rows.append(
            {
                "layer": layer.name,
                "dtype": dtype_name,
                "direction": direction,
                "method": m,
                "chosen": chosen(rules, platform, layer, x, w, config.layout) if m == "auto" else m,
                "batch": batch,
                "ms": 1e3 * t,
                "tflops": flops / t / 1e12,
                "vs_lax": base / t,
                "peak_mb": None if peaks[m] is None else peaks[m] / 2**20,
                "calls": calls[m],
                "repeats": config.repeats,
            }
        )
    return rows


def layer_spec(layer: Layer, x: jax.Array, w: jax.Array, layout: str):
    """The ConvSpec of the conv2d that runs the layer."""
    from jconv._checks import check_conv_args

    k_shape, kwargs = conv2d_arguments(layer, x.shape, w.shape, layout)
    return check_conv_args(
        x.shape, k_shape, x_dtype=x.dtype, kernel_dtype=w.dtype, layout=layout,
        transposed_ok=True, **kwargs,
    )  # fmt: skip


def auto_rules(layer: Layer, x: jax.Array, w: jax.Array, layout: str) -> dict[str, str]:
    """Platform -> the lowering that 'auto' runs for this layer there ('default': others)."""
    from jconv._auto import auto_methods

    return auto_methods(layer_spec(layer, x, w, layout))


def chosen(rules: dict[str, str], platform: str, layer: Layer, x, w, layout: str) -> str:
    """What 'auto' ran on this platform; for the sub-pixel phases, each phase's lowering."""
    from jconv._auto import PHASES, choose_method
    from jconv._subpixel import phase_spec, plan

    method = rules.get(platform, rules["default"])
    if method != PHASES:
        return method
    spec = layer_spec(layer, x, w, layout)
    ph_plan, pw_plan = plan(spec)
    picks = {
        choose_method(phase_spec(spec, ph, pw))
        for ph in ph_plan.phases
        for pw in pw_plan.phases
        if ph.reads_x and pw.reads_x
    }
    return "/".join(sorted(picks))


def default_methods(
    rules: dict[str, str], platform: str, phase_methods: Sequence[str] = ()
) -> list[str]:
    """The methods timed when none are named: CPU_METHODS on a CPU; elsewhere 'auto',
    every lowering that a platform's rule names for the layer (for a transposed layer's
    sub-pixel phases, `phase_methods`: those its phases run), and lax."""
    if platform == "cpu":
        return list(CPU_METHODS)
    from jconv._auto import PHASES

    named = []
    for p, m in rules.items():
        if p != "default":
            named += list(phase_methods) if m == PHASES else [m]
    return list(dict.fromkeys(["auto", *named, BASELINE]))


def lowering_platform() -> str:
    """The default backend as jax.lax.platform_dependent names it ('cuda' or 'rocm', not 'gpu')."""
    backend = jax.default_backend()
    if backend != "gpu":
        return backend
    version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
    return "rocm" if "rocm" in version else "cuda"


def lesson_arithmetic(rows: list[dict]) -> dict:
    """The lesson's sum: its layer's FLOPs, 10 layers x 1 M samples, and the time it takes."""
    flops = jconv.conv2d_flops((1, 100, 68, 68), (100, 100, 5, 5))
    total = flops * 10 * 1_000_000
    out = {
        "flops_per_sample": flops,
        "macs_per_sample": flops // 2,
        "flops_10_layers_1M_samples": total,
    }
    fwd = [r for r in rows if r["layer"] == "lesson" and r["direction"] == "fwd"]
    if fwd:
        best = max(fwd, key=lambda r: r["tflops"])
        out.update(
            best_method=best["method"],
            best_dtype=best["dtype"],
            best_tflops=best["tflops"],
            hours_forward_at_best=total / (best["tflops"] * 1e12) / 3600,
        )
    return out


def environment() -> dict:
    dev = jax.devices()[0]
    return {
        "date": datetime.date.today().isoformat(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'layer':<10} {'dtype':<9} {'dir':<8} {'method':<8} {'runs':<7} {'ms':>9} "
        f"{'TFLOP/s':>8} {'vs lax':>7} {'peak MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
        lines.append(
            f"{r['layer']:<10} {r['dtype']:<9} {r['direction']:<8} {r['method']:<8} "
            f"{r['chosen']:<7} {r['ms']:>9.3f} {r['tflops']:>8.3f} {r['vs_lax']:>6.2f}x "
            f"{peak:>8}"
        )
    return "\n".join(lines)


def run(config: BenchConfig) -> dict:
    """Run the benchmark; returns {'environment', 'rows', 'lesson'} and writes them to out."""
    _check_config(config)
    if config.pallas_table:  # before anything compiles: settings are read at lowering time
        from jconv import _pallas_tuning

        text = pathlib.Path(config.pallas_table).read_text()
        _pallas_tuning.TABLE.update(_pallas_tuning.table_from_json(text))
    env = environment()
    rows: list[dict] = []
    key = jax.random.key(int(time.time()))  # fresh inputs on every run
    result = {"environment": env, "config": dataclasses.asdict(config), "rows": rows}
    for name in config.layers:
        for dtype_name in config.dtypes:
            for direction in config.directions:
                key, sub = jax.random.split(key)
                case = bench_case(LAYERS[name], dtype_name, direction, config, sub)
                rows += case
                if not config.quiet:
                    print(format_table(case).split("\n", 2)[2], flush=True)
                _write(result, config.out)  # after every case: a run cut short keeps its rows
    result["lesson"] = lesson_arithmetic(rows)
    if not config.quiet:
        print()
        print(f"{env['device']} ({env['backend']}), jax {env['jax']}, {env['date']}")
        print(format_table(rows))
        print(json.dumps(result["lesson"], indent=1))
    _write(result, config.out)
    return result


def _write(result: dict, out: str | None) -> None:
    """bench.json and bench.csv under out (nothing if out is None)."""
    if not out or not result["rows"]:
        return
    path = pathlib.Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "bench.json").write_text(json.dumps(result, indent=1))
    with open(path / "bench.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result["rows"][0]))
        writer.writeheader()
        writer.writerows(result["rows"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = BenchConfig()
    p.add_argument("--layers", nargs="+", default=list(d.layers), choices=list(LAYERS))
    p.add_argument("--dtypes", nargs="+", default=list(d.dtypes), choices=list(DTYPES))
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(jconv.METHODS),
        help="default: 'auto', taps, im2col, lax on a CPU; 'auto', the rules' lowerings, "
        "lax on an accelerator",
    )
    p.add_argument("--directions", nargs="+", default=list(d.directions), choices=DIRECTIONS)
    p.add_argument("--layout", default=d.layout, choices=["NCHW", "NHWC"])
    p.add_argument("--batch", type=int, default=None, help="override every layer's batch size")
    p.add_argument("--repeats", type=int, default=d.repeats)
    p.add_argument("--calls", type=int, default=d.calls, help="calls queued per timed batch")
    p.add_argument("--target-s", type=float, default=d.target_s, help="seconds per timed batch")
    p.add_argument("--pallas-table", default=None, help="tune_pallas.py's table.json")
    p.add_argument("--no-torch", dest="torch", action="store_false")
    p.add_argument("--out", default=d.out)
    args = p.parse_args(argv)
    run(BenchConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
