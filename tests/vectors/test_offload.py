"""QuickCallGate: sync user code runs in threads until proven quick, then inline."""

from __future__ import annotations

import threading
import time

import pytest

from memlane.vectors.offload import QuickCallGate

pytestmark = pytest.mark.anyio


def where(_: object) -> int:
    return threading.get_ident()


async def test_a_quick_function_moves_inline_after_its_streak() -> None:
    gate = QuickCallGate(quick_s=1.0, streak=4)
    loop_thread = threading.get_ident()
    threads = [await gate.run(where, None) for _ in range(4)]
    assert loop_thread not in threads, "the first calls run in worker threads"
    assert await gate.run(where, None) == loop_thread
    assert gate.inline


def burn_cpu(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_a_cpu_heavy_function_stays_in_threads() -> None:
    gate = QuickCallGate(quick_s=1e-3, streak=2)

    def heavy(_: object) -> int:
        burn_cpu(0.005)
        return threading.get_ident()

    loop_thread = threading.get_ident()
    assert all([await gate.run(heavy, None) != loop_thread for _ in range(6)])
    assert not gate.inline


async def test_a_function_that_waits_on_io_stays_in_threads() -> None:
    """Little CPU but long waits (a network call): never promoted to the loop."""
    gate = QuickCallGate(streak=2)

    def waits(_: object) -> int:
        time.sleep(0.02)
        return threading.get_ident()

    loop_thread = threading.get_ident()
    assert all([await gate.run(waits, None) != loop_thread for _ in range(4)])
    assert not gate.inline


async def test_an_inline_call_that_turns_slow_sends_it_back_to_threads() -> None:
    gate = QuickCallGate(quick_s=1.0, slow_s=1e-3, streak=2, max_demotions=1)
    slow = False

    def sometimes_slow(_: object) -> int:
        if slow:
            burn_cpu(0.005)
        return threading.get_ident()

    for _ in range(2):
        await gate.run(sometimes_slow, None)
    assert gate.inline
    slow = True
    await gate.run(sometimes_slow, None)
    assert not gate.inline and gate.demotions == 1
    slow = False
    loop_thread = threading.get_ident()
    for _ in range(10):  # out of demotions: never inline again
        assert await gate.run(sometimes_slow, None) != loop_thread


async def test_an_inline_call_that_stalls_sends_it_back_to_threads() -> None:
    gate = QuickCallGate(quick_s=1.0, slow_s=5e-3, streak=1)
    stall = False

    def sometimes_stalls(_: object) -> None:
        if stall:
            time.sleep(0.01)  # waits without using CPU, as on a socket

    await gate.run(sometimes_stalls, None)
    assert gate.inline
    stall = True
    await gate.run(sometimes_stalls, None)
    assert not gate.inline


async def test_large_calls_always_go_to_threads_and_teach_nothing() -> None:
    gate = QuickCallGate(quick_s=1.0, streak=1)
    loop_thread = threading.get_ident()
    for _ in range(3):
        assert await gate.run(where, None, small=False) != loop_thread
    assert not gate.inline
    await gate.run(where, None)
    assert gate.inline
    assert await gate.run(where, None, small=False) != loop_thread


async def test_exceptions_propagate_unchanged_either_way() -> None:
    gate = QuickCallGate(quick_s=1.0, streak=1)

    def boom(_: object) -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await gate.run(boom, None)
    await gate.run(where, None)
    assert gate.inline
    with pytest.raises(KeyError):
        await gate.run(boom, None)
