"""Peak memory: each system filled with the size's items in a child process of its own.

A child per system keeps one system's allocations (and the allocator's leftovers) out of
another's figure. Two figures per child: its whole peak resident set, and the growth of
that peak above the moment just before the store was created (the store's own cost, its
fill and ten searches; the benchmark's table of vectors is in the baseline).

Why not the parent's ``wait4`` rusage: on Linux, ``exec`` carries the parent's RSS
high-water mark into the child's ``ru_maxrss`` (``exec_mmap``), so every child would report
at least the parent's peak. The child reads ``VmHWM`` from ``/proc/self/status`` (the
same counter, for its own address space) and resets it through ``/proc/self/clear_refs``
at the baseline; without ``/proc`` it falls back to ``getrusage`` (ru_maxrss).

Run as ``python -m memlane.bench.scenarios.memory SYSTEM SIZE DIMS`` (the child side).
"""

from __future__ import annotations

import asyncio
import gc
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from memlane.bench.plan import Plan
from memlane.bench.runner import Outcome, Row, Session
from memlane.bench.systems import STORES, StoreHandle, describe_failure, unavailable
from memlane.bench.workloads import Dataset

__all__ = ["child", "run"]

MEMORY_SYSTEMS = ["memlane-sqlite", "memlane-memory", "langgraph-sqlite", "langgraph-memory",
                  "numpy"]
INDEXED = {"memlane-sqlite": True, "memlane-memory": True, "langgraph-memory": True,
           "langgraph-sqlite": False}


IMPORTS = {
    "memlane-sqlite": ("memlane", "aiosqlite"),
    "memlane-memory": ("memlane",),
    "langgraph-sqlite": ("langgraph.store.sqlite.aio",),
    "langgraph-memory": ("langgraph.store.memory",),
}


def _status_mib(field: str) -> float | None:
    """``VmHWM``/``VmRSS`` of this process in MiB, or None without /proc."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _ru_maxrss_mib() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _peak() -> float:
    return _status_mib("VmHWM") or _ru_maxrss_mib()


def _reset_peak() -> float:
    """Reset the high-water mark if the kernel allows; return the baseline to subtract."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return _status_mib("VmRSS") or _peak()
    except OSError:
        return _peak()  # the peak so far: growth above it is still the store's


async def _fill_and_read(key: str, data: Dataset) -> None:
    if key == "numpy":
        from memlane.bench.scenarios.ceilings import numpy_top_k

        vectors = data.vectors[: data.size].copy()  # the store's own copy of the vectors
        for q in range(10):
            numpy_top_k(vectors, data.queries[q : q + 1], 10)
        return
    system = next(s for s in STORES if s.key == key)
    with tempfile.TemporaryDirectory(prefix="memlane-bench-mem-") as tmp:
        index = data.index_config() if INDEXED[key] else None
        handle = StoreHandle(system, Path(tmp) / "store.db", index)
        await handle.open()
        try:
            for chunk in data.chunks():
                await handle.fill(chunk)
            for q in range(10):
                if index is not None:
                    await handle.store.asearch(("users",), query=data.query_text(q), limit=10)
                else:
                    await handle.store.aget(("users", "u0", "memories"), "m0")
        finally:
            await handle.close()


async def child(key: str, size: int, dims: int) -> dict[str, float]:
    """Fill one system with ``size`` items and run 10 reads; report the peaks in MiB."""
    import importlib

    for module in IMPORTS.get(key, ()):  # imports are part of the baseline, not the store
        importlib.import_module(module)
    data = Dataset(size, dims, extra_rows=0, queries_count=16)
    before = _peak()
    baseline = _reset_peak()
    await _fill_and_read(key, data)
    after = _peak()
    return {"peak_mib": max(before, after), "above_baseline_mib": max(0.0, after - baseline)}


def measure_child(key: str, size: int, dims: int) -> tuple[float, float]:
    """Run one child; return (its peak RSS, the growth above its baseline), in MiB."""
    done = subprocess.run(
        [sys.executable, "-m", "memlane.bench.scenarios.memory", key, str(size), str(dims)],
        capture_output=True, check=False,
    )
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"child exited with {done.returncode}: {last[0]}")
    result = orjson.loads(done.stdout)
    return float(result["peak_mib"]), float(result["above_baseline_mib"])


async def run(session: Session, plan: Plan, size: int) -> None:
    common = {"items": size}
    # LangGraph's SQLite store runs without an index here (sqlite-vec): no ratio against it
    unlike = ("langgraph-sqlite",)
    whole = Row("peak_memory", "peak RSS, whole process", "MiB", "MiB", False,
                params=dict(common), items=size, unlike=unlike,
                note="child process per system; includes the interpreter, imports and the "
                     "benchmark's own table of vectors")
    above = Row("peak_memory", "peak RSS above baseline (the store)", "MiB", "MiB", False,
                params=dict(common), items=size, unlike=unlike,
                note="peak minus the child's RSS after its imports and the benchmark's vector "
                     "table, just before the store was created; stores indexed except "
                     "LangGraph AsyncSqliteStore (sqlite-vec)")
    for key in MEMORY_SYSTEMS:
        session.on_step(f"peak memory: {key} at {size:,} items (child process)")
        reason = unavailable(key)
        if reason is None and key.startswith("langgraph") and size > plan.langgraph_max_items:
            reason = f"not run above {plan.langgraph_max_items:,} items (time budget)"
        if reason is None and size > plan.memory_max_items:
            reason = f"not run above {plan.memory_max_items:,} items"
        if reason is not None:
            whole.skip(key, reason)
            above.skip(key, reason)
            continue
        try:
            peak, growth = await asyncio.to_thread(measure_child, key, size, plan.dims)
        except Exception as exc:
            whole.skip(key, f"failed: {describe_failure(exc)}")
            above.skip(key, f"failed: {describe_failure(exc)}")
            continue
        whole.outcomes[key] = _single(peak)
        above.outcomes[key] = _single(growth)
        session.on_trial(f"peak memory [{key}]")
    session.rows.extend([whole, above])


def _single(value: float) -> Outcome:
    return Outcome(values=[value])


def main() -> None:
    key, size, dims = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    result = asyncio.run(child(key, size, dims))
    sys.stdout.write(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
