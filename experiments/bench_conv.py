"""Benchmark: jconv.conv2d with each method against lax.conv_general_dilated.

Why a script and not a test: speed depends on the machine, so it is measured
here and recorded in BENCHMARKS.md, never asserted in CI. Every compared pair
is measured in the same run, interleaved repeat by repeat, so that a ratio is
never a comparison across runs or across a change in machine load.

Timing follows the device tool's method: compile and warm up first, then queue
`calls` calls before a single block_until_ready, and take the median over
`repeats` such batches. Inputs are fresh normal random numbers per layer.

On a GPU the times are the device's own (`device_seconds`: the kernels' times
from a jax.profiler trace, summed per call), not the host's clock: dispatching
a jitted call costs the host about as long as a ResNet layer runs on the card.
The host-clock time is kept as `wall_ms`. torch is timed by replaying a CUDA
graph of its step, which the host's clock times well (one launch for the whole
graph).

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
import glob
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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
    dilation: int = 1  # kernel dilation (plain convolutions only)
    width: int = 0  # input width where it differs from the height `hw`

    @property
    def in_hw(self) -> tuple[int, int]:
        """The input's (height, width)."""
        return self.hw, self.width or self.hw

    @property
    def conv_kwargs(self) -> dict:
        """conv2d's (or conv_transpose2d's) keyword arguments (besides layout and method)."""
        kwargs = {"stride": self.stride, "padding": self.padding, "groups": self.groups}
        return kwargs if self.dilation == 1 else {**kwargs, "dilation": self.dilation}

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
# Shapes outside the suite that 'auto''s CPU rule must also win on (issue #16): wide
# images with few channels, first layers on 3 channels (VGG's: lax's forward with the
# band's gradients), dilation, CIFAR-sized layers, grouped convolutions.
EXTRA = (
    Layer("wide16", 16, 64, 3, 64, 1, "SAME", 1, 2, 16, "16 -> 64 3x3 on 64x256", width=256),
    Layer("stem7", 3, 64, 7, 224, 2, 3, 1, 2, 64, "ResNet stem: 3 -> 64 7x7 s2, 224 -> 112"),
    Layer("rgb112", 3, 32, 3, 112, 1, "SAME", 1, 4, 64, "3 -> 32 3x3 at 112x112"),
    Layer("vgg_in", 3, 64, 3, 224, 1, "SAME", 1, 2, 64, "VGG first layer 3 -> 64 3x3, 224x224"),
    Layer("dilated", 64, 64, 3, 28, 1, "SAME", 1, 4, 64, "64 -> 64 3x3 dilation 2, 28x28",
          dilation=2),
    Layer("cifar_in", 3, 16, 3, 32, 1, "SAME", 1, 64, 256, "CIFAR first layer 3 -> 16, 32x32"),
    Layer("cifar32", 16, 16, 3, 32, 1, "SAME", 1, 64, 256, "CIFAR ResNet 16 -> 16, 32x32"),
    Layer("cifar8", 64, 64, 3, 8, 1, "SAME", 1, 64, 256, "CIFAR ResNet 64 -> 64, 8x8"),
    Layer("resnext", 256, 256, 3, 28, 1, "SAME", 32, 4, 64, "ResNeXt 3x3, 32 groups of 8, 28x28"),
)  # fmt: skip
LAYERS = {layer.name: layer for layer in SUITE}
ALL_LAYERS = {**LAYERS, **{layer.name: layer for layer in EXTRA}}
GROUPS = {"suite": tuple(LAYERS), "extra": tuple(layer.name for layer in EXTRA)}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DIRECTIONS = ("fwd", "fwd+bwd")
BASELINE = "xla"
TORCH = "torch"  # torch.nn.functional's conv2d (or conv_transpose2d), when installed
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
    # torch's intra-op threads (None: its default, one per core). On a loaded machine its
    # OpenMP threads wait for each other at every barrier: 2 threads ran 6x slower than 1
    # on 2 shared cores, so a shared machine's torch figures need --torch-threads 1.
    torch_threads: int | None = None
    out: str | None = "runs/bench_conv"  # where bench.json and bench.csv go (None: nowhere)
    quiet: bool = False
    pallas_table: str | None = None  # tune_pallas.py's table.json for 'pallas' (None: jconv's)


def _check_config(config: BenchConfig) -> None:
    for name, given, allowed in [
        ("layer", config.layers, ALL_LAYERS),
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
    hw = layer.in_hw
    x_shape = (batch, layer.c, *hw) if layout == "NCHW" else (batch, *hw, layer.c)
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


def torch_padding(layer: Layer) -> int | str | None:
    """torch's padding argument for the layer: an int, 'same' or 'valid'.

    torch refuses 'same' at a stride above 1; there it gets the symmetric amount
    ((k - 1) * dilation) // 2 a side, as torchvision's ResNet writes it, when that
    gives lax's output shape (the same multiply-adds; the windows may sit a pixel
    from lax's, which puts the odd pixel of 'SAME' at the bottom and right). None:
    no such amount.
    """
    if isinstance(layer.padding, int):
        return layer.padding
    pad = layer.padding.lower()
    if pad == "valid" or layer.stride == 1:
        return pad
    p = ((layer.k - 1) * layer.dilation) // 2
    span = (layer.k - 1) * layer.dilation + 1
    same = all(
        (size + 2 * p - span) // layer.stride + 1 == -(-size // layer.stride)
        for size in layer.in_hw
    )
    return p if same else None


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
        return torch.from_numpy(np.array(a.astype(jnp.float32))).to(device=device, dtype=tdt)

    if layout == "NHWC":
        tx = to(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        tw = to(w).permute(3, 2, 0, 1).contiguous()
        tct = to(ct).permute(0, 3, 1, 2)
    else:
        tx, tw, tct = to(x), to(w), to(ct)
    pad = torch_padding(layer)
    if pad is None:
        return None
    extra = {} if layer.transposed else {"dilation": layer.dilation}
    torch_conv = (
        torch.nn.functional.conv_transpose2d if layer.transposed else torch.nn.functional.conv2d
    )

    def fwd():
        return torch_conv(tx, tw, stride=layer.stride, padding=pad, groups=layer.groups, **extra)

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


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# --- the device's own time on a GPU ---
# A jitted call costs the host tens of microseconds to dispatch, about as long as
# one ResNet layer runs on an H200: a host clock around queued calls measures the
# host. On the H200 machine (jax 0.11.2, 2026-11-26) lax's forward on ResNet's
# 28x28 layer took 57 us a call by the host's clock and 29 us of GPU time. So on a
# GPU the times are the kernels' own, from a jax.profiler trace (CUPTI): inside one
# trace each function runs `calls` times back to back, then the host waits for the
# device and sleeps, so that each run's kernels form one burst on the GPU's
# timeline; a function's time per call is its burst's summed kernel times over
# `calls` (the device's busy time, without the host's gaps).

GAP_S = 0.02  # idle time between bursts; a burst ends at a gap of half this


class KernelEvent(NamedTuple):
    """One kernel, copy or memset on a GPU stream, as the profiler recorded it."""

    start_ns: int
    duration_ns: int
    name: str = ""


def bursts(events: Sequence[tuple], gap_ns: int) -> list[list[tuple]]:
    """Group (start_ns, duration_ns, ...) events, in time order, at idle gaps over gap_ns."""
    groups: list[list[tuple]] = []
    end = None
    for event in sorted(events):
        start, duration = event[0], event[1]
        if end is None or start - end > gap_ns:
            groups.append([])
        groups[-1].append(event)
        end = max(start + duration, end or 0)
    return groups


def trace_planes(trace_dir: str) -> Any:
    """The planes (devices, host) of the one jax.profiler trace under trace_dir."""
    [path] = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    return jax.profiler.ProfileData.from_file(path).planes


def gpu_events(trace_dir: str) -> list[KernelEvent]:
    """Every kernel, copy and memset on the GPU's streams in a jax.profiler trace."""
    events = []
    for plane in trace_planes(trace_dir):
        if not plane.name.startswith("/device:GPU"):
            continue
        for line in plane.lines:
            if line.name.startswith("Stream"):  # not the derived "XLA Ops"/"XLA Modules" lines
                events += [
                    KernelEvent(int(e.start_ns), int(e.duration_ns), e.name) for e in line.events
                ]
    return events


def device_bursts(
    fns: Mapping[Any, Callable[[], Any]], calls: int, repeats: int = 1, gap_s: float = GAP_S
) -> dict[Any, list[list[KernelEvent]]] | None:
    """The GPU's kernels of each fn, one list per repeat of `calls` calls; None without a
    GPU timeline (a CPU), or where the trace does not split into one burst per run.

    fns: name -> a function of no arguments that launches device work (a
    compiled JAX function with its arguments bound); each is warmed up first.
    """
    for fn in fns.values():
        jax.block_until_ready(fn())
    order = [name for _ in range(repeats) for name in fns]
    with tempfile.TemporaryDirectory() as trace_dir:
        try:
            jax.profiler.start_trace(trace_dir)
        except RuntimeError:  # a profile the caller started is running: one at a time
            return None
        try:
            time.sleep(gap_s)
            for name in order:
                out = None
                for _ in range(calls):
                    out = fns[name]()
                jax.block_until_ready(out)
                time.sleep(gap_s)
        finally:
            jax.profiler.stop_trace()
        try:
            events = gpu_events(trace_dir)
        except ValueError:  # no trace file, or several
            return None
    groups = bursts(events, int(gap_s * 1e9 / 2))
    if len(groups) != len(order):  # not one burst per run: do not guess which is which
        return None
    runs: dict[Any, list[list[KernelEvent]]] = {name: [] for name in fns}
    for name, group in zip(order, groups):
        runs[name].append(group)
    return runs


def device_seconds(
    fns: Mapping[Any, Callable[[], Any]], calls: int, repeats: int = 1, gap_s: float = GAP_S
) -> dict[Any, list[float]] | None:
    """GPU busy seconds per call of each fn (one value per repeat), or None without a GPU
    timeline: `device_bursts`' kernel times summed over a run, over `calls`."""
    runs = device_bursts(fns, calls, repeats, gap_s)
    if runs is None:
        return None
    return {
        name: [sum(e.duration_ns for e in group) / calls / 1e9 for group in groups]
        for name, groups in runs.items()
    }


TORCH_GRAPH_STEPS = 4  # torch steps per captured CUDA graph on a GPU


def _torch_graph(step: Callable[[], Any], steps: int) -> Callable[[], Any]:
    """`steps` runs of a torch step captured in one CUDA graph; a call replays the graph."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the graph, as torch asks
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(steps):
            step()

    def replay():
        graph.replay()

    replay.sync = step.sync
    return replay


def time_batch(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call: `calls` calls queued, then one block (fn.sync for torch)."""
    sync = getattr(fn, "sync", jax.block_until_ready)
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn()
    sync(out)
    return (time.perf_counter() - start) / calls


def _compile(step: Callable, *args) -> tuple[Callable, int | None, float]:
    """Compile once; return the executable, its peak bytes from XLA's memory analysis
    and the seconds that tracing, lowering and compiling took.

    Peak = arguments + outputs + temporaries of the compiled program (None when the
    backend reports nothing). The compile time is what a user's first call waits for
    beyond the run itself: JAX's caches are cleared first, so that no trace of an
    earlier case is reused (XLA's persistent cache is off unless configured).
    """
    jax.clear_caches()
    start = time.perf_counter()
    compiled = step.lower(*args).compile()
    seconds = time.perf_counter() - start
    try:
        stats = compiled.memory_analysis()
        peak = int(
            stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
        )
    except Exception:  # some backends report no memory analysis
        peak = None
    return compiled, peak, seconds


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
    fns, peaks, compile_s = {}, {}, {}
    for m in methods:
        step = make_step(layer, config.layout, m, direction)
        compiled, peaks[m], compile_s[m] = _compile(step, x, w, ct)
        fns[m] = functools.partial(compiled, x, w, ct)
    if config.torch:
        if config.torch_threads:
            _set_torch_threads(config.torch_threads)
        torch_fn = _torch_step(layer, config.layout, direction, x, w, ct)
        if torch_fn is not None:  # eager: nothing to compile
            fns[TORCH], peaks[TORCH], compile_s[TORCH] = torch_fn, None, None
    steps = {m: 1 for m in fns}  # steps per call of fns[m]
    if TORCH in fns and platform != "cpu":
        try:
            fns[TORCH] = _torch_graph(fns[TORCH], TORCH_GRAPH_STEPS)
            steps[TORCH] = TORCH_GRAPH_STEPS
        except Exception as e:  # a step torch cannot capture: timed eagerly
            print(f"torch on {layer.name}: no CUDA graph ({type(e).__name__}: {e}); timed eagerly")
    calls = {}
    for m, fn in fns.items():  # compile, warm up, size the batches
        per_call = time_batch(fn, 1)
        per_call = min(per_call, time_batch(fn, 1))
        calls[m] = config.calls or max(1, min(100, round(config.target_s / max(per_call, 1e-6))))
    wall: dict[str, list[float]] = {m: [] for m in fns}
    for _ in range(config.repeats):
        for m, fn in fns.items():
            wall[m].append(time_batch(fn, calls[m]) / steps[m])
    times, timer = dict(wall), {m: "host clock" for m in fns}
    if platform != "cpu":
        jax_fns = {m: fn for m, fn in fns.items() if m != TORCH}
        device = device_seconds(jax_fns, calls=10, repeats=config.repeats)
        if device is None:
            print(f"{layer.name}: no GPU trace; host-clock times")
        else:
            times.update(device)
            timer.update({m: "device" for m in device})
            if TORCH in fns and steps[TORCH] > 1:
                timer[TORCH] = "CUDA graph"
    base = statistics.median(times[BASELINE])
    torch_t = statistics.median(times[TORCH]) if TORCH in times else None
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
                "vs_torch": None if torch_t is None else torch_t / t,
                "compile_s": compile_s[m],
                "peak_mb": None if peaks[m] is None else peaks[m] / 2**20,
                "calls": calls[m],
                "repeats": config.repeats,
                "timer": timer[m],
                "wall_ms": 1e3 * statistics.median(wall[m]),
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
    from jconv._auto import PHASES, choose_phase_method
    from jconv._subpixel import phase_spec, plan

    method = rules.get(platform, rules["default"])
    if method != PHASES:
        return method
    spec = layer_spec(layer, x, w, layout)
    ph_plan, pw_plan = plan(spec)
    picks = {
        choose_phase_method(phase_spec(spec, ph, pw))
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


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # reported if present


def cpu_model() -> tuple[str, list[str]]:
    """The host CPU's model name and which of CPU_FLAGS it has (Linux's /proc/cpuinfo;
    elsewhere platform.processor() and no flags)."""
    try:
        info = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", []
    fields = dict(
        line.split(":", 1) for line in info.splitlines()[:40] if ":" in line
    )  # the first processor's entry
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", "unknown"), [f for f in CPU_FLAGS if f in flags]


def environment() -> dict:
    dev = jax.devices()[0]
    model, flags = cpu_model()
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "date": datetime.date.today().isoformat(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "devices": jax.device_count(),
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch_version,
        "settings": timing_settings(),
    }


# Settings from the environment that change what a run measures: XLA's flags, and glibc's
# allocator policy (a CPU program's temporaries are new memory on every call; README.md,
# "Speed on a CPU").
TIMING_SETTINGS = ("XLA_FLAGS", "LD_PRELOAD", "GLIBC_TUNABLES")


def timing_settings() -> dict[str, str]:
    """The environment's timing-relevant settings that are set (XLA_FLAGS, MALLOC_*, ...)."""
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k in TIMING_SETTINGS or k.startswith("MALLOC_")
    }


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'layer':<10} {'dtype':<9} {'dir':<8} {'method':<8} {'runs':<8} {'ms':>9} "
        f"{'TFLOP/s':>8} {'vs lax':>7} {'vs torch':>8} {'compile s':>9} {'peak MB':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = "" if r["peak_mb"] is None else f"{r['peak_mb']:.1f}"
        vs_torch = "" if r.get("vs_torch") is None else f"{r['vs_torch']:.2f}x"
        comp = "" if r.get("compile_s") is None else f"{r['compile_s']:.2f}"
        lines.append(
            f"{r['layer']:<10} {r['dtype']:<9} {r['direction']:<8} {r['method']:<8} "
            f"{r['chosen']:<8} {r['ms']:>9.3f} {r['tflops']:>8.3f} {r['vs_lax']:>6.2f}x "
            f"{vs_torch:>8} {comp:>9} {peak:>8}"
        )
    return "\n".join(lines)


def _geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


COMPILE_FACTOR, COMPILE_FLOOR_S = 3.0, 2.0  # issue #16: within max(3x lax's, 2 s)


def summarize(rows: list[dict]) -> list[str]:
    """One line per method, dtype and direction: its speed against lax and against torch
    over the layers timed (geometric mean, lowest and where), and its compile time
    against lax's (the worst ratio, and the layers past max(3x lax's, 2 s))."""
    lines = []
    cases = dict.fromkeys((r["method"], r["dtype"], r["direction"]) for r in rows)
    for method, dtype, direction in cases:
        if method in (BASELINE, TORCH):
            continue
        mine = [
            r
            for r in rows
            if (r["method"], r["dtype"], r["direction"]) == (method, dtype, direction)
        ]
        parts = [f"{method:<8} {dtype:<9} {direction:<8}"]
        for key, name in (("vs_lax", "lax"), ("vs_torch", "torch")):
            ratios = [(r[key], r["layer"]) for r in mine if r.get(key)]
            if ratios:
                low = min(ratios)
                parts.append(
                    f"vs {name} {_geomean([v for v, _ in ratios]):.2f}x "
                    f"(lowest {low[0]:.2f}x {low[1]}, {len(ratios)} layers)"
                )
        limit = {  # the bound on each layer: max(3x lax's compile time, 2 s)
            r["layer"]: max(COMPILE_FACTOR * r["compile_s"], COMPILE_FLOOR_S)
            for r in rows
            if (r["method"], r["dtype"], r["direction"]) == (BASELINE, dtype, direction)
        }
        timed = [r for r in mine if r.get("compile_s") is not None]
        if timed:
            over = [r["layer"] for r in timed if r["compile_s"] > limit[r["layer"]]]
            worst = max(timed, key=lambda r: r["compile_s"] / limit[r["layer"]])
            parts.append(
                f"compile worst {worst['compile_s']:.2f} s, limit {limit[worst['layer']]:.2f} s "
                f"({worst['layer']}); over max(3x lax, 2 s): {', '.join(over) or 'none'}"
            )
        lines.append("; ".join(parts))
    return lines


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
                case = bench_case(ALL_LAYERS[name], dtype_name, direction, config, sub)
                rows += case
                if not config.quiet:
                    print(format_table(case).split("\n", 2)[2], flush=True)
                _write(result, config.out)  # after every case: a run cut short keeps its rows
    result["lesson"] = lesson_arithmetic(rows)
    result["summary"] = summarize(rows)
    if not config.quiet:
        print()
        print(
            f"{env['device']} ({env['backend']}; {env['cpu_model']}, {env['cpu_count']} cores, "
            f"{' '.join(env['cpu_flags'])}), jax {env['jax']}, torch {env['torch']}, "
            f"{env['date']}, load average {env['load_average']}"
            + "".join(f", {k}={v}" for k, v in env["settings"].items())
        )
        print(format_table(rows))
        print(json.dumps(result["lesson"], indent=1))
        print("\n".join(result["summary"]))
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
    p.add_argument(
        "--layers",
        nargs="+",
        default=list(d.layers),
        choices=[*ALL_LAYERS, *GROUPS],
        help="layers by name, or 'suite' (the default) and 'extra' (EXTRA's shapes)",
    )
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
    p.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--out", default=d.out)
    args = p.parse_args(argv)
    args.layers = list(dict.fromkeys(n for g in args.layers for n in GROUPS.get(g, (g,))))
    run(BenchConfig(**vars(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
