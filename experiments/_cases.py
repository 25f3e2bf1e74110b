"""What the profiling scripts share: the cases they run and their command line.

experiments/gpu_kernels.py (a GPU's kernels) and experiments/cpu_ops.py (a CPU's XLA
operations) each profile bench_conv's steps for every (layer, direction, method) asked
for; only what they record for one case differs (`profile_case`, `format_row`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from experiments.bench_conv import ALL_LAYERS, DIRECTIONS, DTYPES, environment


@dataclasses.dataclass
class CaseConfig:
    layers: Sequence[str] = ("resnet14",)
    methods: Sequence[str] = ("auto", "xla")
    directions: Sequence[str] = DIRECTIONS
    dtype: str = "float32"
    layout: str = "NHWC"
    batch: int | None = None  # None: the layer's batch size on the platform profiled
    calls: int = 20
    top: int = 6  # what each row lists, the longest first
    quiet: bool = False


def run_cases(
    config: CaseConfig,
    profile_case: Callable[[str, str, str, Any], dict],
    format_row: Callable[[dict, int], str],
) -> dict:
    """profile_case for every (layer, direction, method) asked for, each row printed as
    format_row gives it unless quiet; returns {'environment', 'rows'}."""
    for name in config.layers:
        if name not in ALL_LAYERS:
            raise ValueError(f"unknown layer {name!r}; choose from {list(ALL_LAYERS)}")
    if config.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {config.dtype!r}; choose from {list(DTYPES)}")
    rows = []
    for name in config.layers:
        for direction in config.directions:
            for method in config.methods:
                row = profile_case(name, direction, method, config)
                rows.append(row)
                if not config.quiet:
                    print(format_row(row, config.top), flush=True)
    return {"environment": environment(), "rows": rows}


def case_parser(description: str, defaults: CaseConfig) -> argparse.ArgumentParser:
    """A command line with CaseConfig's arguments, defaulting to `defaults`'."""
    p = argparse.ArgumentParser(description=description)
    d = defaults
    p.add_argument("--layers", nargs="+", default=list(d.layers), choices=list(ALL_LAYERS))
    p.add_argument("--methods", nargs="+", default=list(d.methods))
    p.add_argument("--directions", nargs="+", default=list(d.directions), choices=DIRECTIONS)
    p.add_argument("--dtype", default=d.dtype, choices=list(DTYPES))
    p.add_argument("--layout", default=d.layout, choices=["NCHW", "NHWC"])
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--calls", type=int, default=d.calls)
    p.add_argument("--top", type=int, default=d.top)
    return p
