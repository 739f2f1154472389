"""How big and how long a run is: the presets and the knobs the command line overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = ["FAMILIES", "PRESETS", "Plan"]

# Scenario families, in the order they run; ``--scenarios`` picks a subset.
FAMILIES = ("writes", "gets", "vector_search", "filter_search", "reopen", "peak_memory",
            "agent_loop")


@dataclass(frozen=True)
class Plan:
    """Every size and count a run uses; recorded in results.json as it was."""

    preset: str
    sizes: tuple[int, ...]
    repeats: int
    dims: int = 384
    writers: tuple[int, ...] = (1, 100, 1_000)
    readers: tuple[int, ...] = (1, 100)
    search_concurrency: int = 64
    write_ops: int = 2_000  # puts per write trial
    get_ops: int = 2_000  # gets per get trial
    search_ops: int = 64  # lone queries per trial; one round of 64 concurrent per trial
    concurrent_rounds: int = 4
    agent_runs: int = 200
    agent_concurrency: int = 50
    overhead_runs: int = 300
    slow_trial_s: float = 15.0  # a system whose warm-up takes longer is measured once
    trial_limit_s: float = 60.0  # ... and one whose warm-up takes longer is not repeated
    langgraph_max_items: int = 100_000  # prefilling LangGraph beyond this takes too long
    memory_max_items: int = 1_000_000
    families: tuple[str, ...] = FAMILIES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **changes: Any) -> Plan:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


PRESETS = {
    # For the test suite: every scenario once on tiny data; the figures mean nothing.
    "smoke": Plan("smoke", sizes=(300, 1_000), repeats=1, dims=32, writers=(1, 100),
                  write_ops=100, get_ops=100, search_ops=8, search_concurrency=8,
                  concurrent_rounds=1, agent_runs=20, agent_concurrency=5, overhead_runs=20,
                  slow_trial_s=2.0, trial_limit_s=10.0),
    # Under two minutes on two cores.
    "quick": Plan("quick", sizes=(1_000, 10_000), repeats=3, write_ops=500, get_ops=1_000,
                  search_ops=16, concurrent_rounds=1, agent_runs=100, overhead_runs=200,
                  slow_trial_s=2.0, trial_limit_s=20.0),
    # Under thirty minutes on two cores; 1M runs where it fits in memory (see suite.py).
    "full": Plan("full", sizes=(10_000, 100_000, 1_000_000), repeats=5, write_ops=2_000,
                 get_ops=3_000, search_ops=16, concurrent_rounds=1, agent_runs=200,
                 overhead_runs=1_000),
}
