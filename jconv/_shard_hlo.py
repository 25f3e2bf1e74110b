"""Reading the collectives out of a compiled program, to check what a strategy communicates.

`jax.jit(f).lower(...).compile().as_text()` is the HLO that will run; each
collective in it is one line such as

    %all-reduce = (f32[8,8,3,3]{3,2,1,0}, f32[1,8,1,1]{3,2,1,0}) all-reduce(...),
        replica_groups={{0,1,2,3,4,5,6,7}}, ...

`collectives_in_hlo` lists them with their sizes, and `Collective.bytes_sent`
turns a size into the bytes each participating device sends, under the same
ring-algorithm model the cost functions of jconv._cost use, so that the two can
be compared figure for figure.
"""

from __future__ import annotations

import re
from typing import NamedTuple

COLLECTIVE_KINDS = (
    "all-reduce",
    "reduce-scatter",
    "all-gather",
    "collective-permute",
    "all-to-all",
)

_ITEMSIZE = {
    "pred": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1,
    "s16": 2, "u16": 2, "f16": 2, "bf16": 2,
    "s32": 4, "u32": 4, "f32": 4,
    "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16,
}  # fmt: skip

_LINE = re.compile(
    r"=\s+(?P<type>.+?)\s+(?P<op>" + "|".join(COLLECTIVE_KINDS) + r")(?P<start>-start)?\("
)
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")
_IOTA_GROUPS = re.compile(r"replica_groups=\[(\d+),(\d+)\]")
_LIST_GROUPS = re.compile(r"replica_groups=\{\{([0-9,]*)\}")
_PAIRS = re.compile(r"source_target_pairs=\{([0-9,{}]*)\}")
_PARTITIONS = re.compile(r"\bnum_partitions=(\d+)")
_REPLICAS = re.compile(r"\breplica_count=(\d+)")


def ring_all_reduce_bytes(size: int, devices: int) -> int:
    """Bytes each of `devices` sends to all-reduce `size` bytes: 2 (D - 1) / D of it."""
    return 2 * (devices - 1) * size // devices if devices > 1 else 0


def ring_gather_bytes(size: int, devices: int) -> int:
    """Bytes each device sends to all-gather (or reduce-scatter) a `size`-byte whole."""
    return (devices - 1) * size // devices if devices > 1 else 0


class Collective(NamedTuple):
    """One collective operation of a compiled program."""

    kind: str  # one of COLLECTIVE_KINDS
    nbytes: int  # bytes of its result on one device (operand, for collective-permute)
    group_size: int  # devices in each replica group (collective-permute: senders)

    @property
    def bytes_sent(self) -> int:
        """Bytes each participating device sends (ring algorithms; a permute sends its operand)."""
        g = self.group_size
        if self.kind == "all-reduce":
            return ring_all_reduce_bytes(self.nbytes, g)
        if self.kind == "reduce-scatter":  # the result is one device's 1/g of the whole
            return ring_gather_bytes(self.nbytes * g, g)
        if self.kind in ("all-gather", "all-to-all"):
            return ring_gather_bytes(self.nbytes, g)
        return self.nbytes  # collective-permute


def _array_bytes(dtype: str, dims: str) -> int:
    n = 1
    for d in filter(None, dims.split(",")):
        n *= int(d)
    return n * _ITEMSIZE.get(dtype, 4)


def _module_devices(hlo_text: str) -> int:
    """Devices the module runs on: num_partitions x replica_count (each 1 if not printed)."""
    partitions, replicas = _PARTITIONS.search(hlo_text), _REPLICAS.search(hlo_text)
    return (int(partitions[1]) if partitions else 1) * (int(replicas[1]) if replicas else 1)


def collectives_in_hlo(hlo_text: str, num_devices: int | None = None) -> list[Collective]:
    """The collectives of a compiled HLO module's text, in program order.

    num_devices is the group size assumed when a collective names no groups
    (`replica_groups={}` or none at all, meaning every device); by default it is
    the module's own count, num_partitions x replica_count from its header.
    Asynchronous pairs (GPU's `-start`/`-done`) count once.
    """
    if num_devices is None:
        num_devices = _module_devices(hlo_text)
    found = []
    for line in hlo_text.splitlines():
        m = _LINE.search(line)
        if not m:
            continue
        kind, arrays = m["op"], _ARRAY.findall(m["type"])
        if m["start"] and kind == "collective-permute":
            arrays = arrays[:1]  # (operand, result, contexts...)
        elif m["start"] and kind == "all-gather":
            arrays = arrays[len(arrays) // 2 :]  # (operands..., results...)
        nbytes = sum(_array_bytes(t, d) for t, d in arrays)
        if kind == "collective-permute":
            pairs = _PAIRS.search(line)
            group = len(re.findall(r"\{\d+,\d+\}", pairs[1])) if pairs else 0
        elif g := _IOTA_GROUPS.search(line):
            group = int(g[2])
        elif g := _LIST_GROUPS.search(line):
            group = len([v for v in g[1].split(",") if v])
        else:
            group = num_devices
        found.append(Collective(kind, nbytes, group))
    return found


def count_collectives(hlo_text: str) -> dict[str, int]:
    """{kind: how many} for the collectives in a compiled HLO module's text."""
    counts: dict[str, int] = {}
    for c in collectives_in_hlo(hlo_text):
        counts[c.kind] = counts.get(c.kind, 0) + 1
    return counts
