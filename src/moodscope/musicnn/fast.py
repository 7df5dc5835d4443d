"""Which number format and runtime musicnn runs in, decided without importing PyTorch.

``float32`` (exact) runs the network exported to ONNX on onnxruntime
(:mod:`moodscope.musicnn.network`). ``bfloat16`` runs the PyTorch port with its convolutions as
bfloat16 GEMMs on AMX tiles (:mod:`moodscope.musicnn.amx`): 6-8x faster matrices than float32
on a CPU with AMX, so where the research extra (PyTorch) is installed on such a CPU it is the
fast path; elsewhere float32 on onnxruntime is. ``benchmarks/bench_fast.py`` checks the
bfloat16 path's predictions against float32 on the dev tracks.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from moodscope.extras import has_research

__all__ = ["PRECISIONS", "cpu_flags", "fast_precision", "resolve_precision"]

PRECISIONS = ("float32", "bfloat16")
"""What the network can compute in: ``float32`` (exact) or ``bfloat16`` (AMX GEMMs)."""

_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


@functools.cache
def cpu_flags() -> tuple[str, ...]:
    """The CPU flags that decide the fast path (of :data:`_FLAGS`, as /proc/cpuinfo names them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return tuple(f for f in _FLAGS if f in have)
    except OSError:
        pass
    return ()


@functools.cache
def fast_precision() -> str:
    """``"bfloat16"`` where this CPU multiplies bfloat16 matrices on AMX tiles and PyTorch
    (the research extra) is installed to drive them, else ``"float32"``: without AMX,
    bfloat16 GEMMs are no faster than float32 ones, so the exact path is also the fast one.

    ``MOODSCOPE_PRECISION=float32`` forces the exact path for the whole process.
    """
    forced = os.environ.get("MOODSCOPE_PRECISION", "").strip().lower()
    if forced in PRECISIONS:
        return forced
    amx = {"amx_tile", "amx_bf16"} <= set(cpu_flags())
    return "bfloat16" if amx and has_research() else "float32"


def resolve_precision(exact: bool) -> str:
    """The precision a prediction runs in: float32 when ``exact``, else :func:`fast_precision`."""
    return "float32" if exact else fast_precision()
