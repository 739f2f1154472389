"""Fixtures for the agent tests: a store, and loopback HTTP servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from agent_wire_server import Recorded, Reply, WireServer

from memlane import InMemoryStore
from memlane.store.base import BaseStore


@pytest.fixture
def store() -> Iterator[BaseStore]:
    s: BaseStore = InMemoryStore()
    yield s
    s.close()


@pytest.fixture
def wire_server() -> Iterator[Callable[[Callable[[Recorded], Reply]], WireServer]]:
    servers: list[WireServer] = []

    def start(handler: Callable[[Recorded], Reply]) -> WireServer:
        server = WireServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
