"""Fixtures for the LangGraph/LangChain integration tests.

The test modules skip themselves (``pytest.importorskip("langgraph")``) when the
``langgraph`` extra is absent; this file imports nothing from it at import time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest
from tests.conftest import StoreFactory, keyword_embed

if TYPE_CHECKING:
    from memlane.integrations.langgraph import LangGraphStore

AdapterFactory = Callable[..., Awaitable["LangGraphStore"]]


class KeywordEmbeddings:
    """A LangChain ``Embeddings`` look-alike over the transparent keyword embedding.

    ``as_langchain()`` returns a real ``langchain_core.embeddings.Embeddings`` subclass.
    """

    @staticmethod
    def as_langchain() -> Any:
        from langchain_core.embeddings import Embeddings

        class _Keyword(Embeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return keyword_embed(texts)

            def embed_query(self, text: str) -> list[float]:
                return keyword_embed([text])[0]

        return _Keyword()


@pytest.fixture
async def make_adapter(make_store: StoreFactory) -> AdapterFactory:
    """``await make_adapter(index=..., ttl=..., clock=...)``: a memlane store of the current
    backend (memory, sqlite) behind ``LangGraphStore``; the store is closed afterwards.
    ``index``/``ttl`` may use LangGraph's dict shapes."""
    from memlane.integrations.langgraph import LangGraphStore, index_config, ttl_config

    async def factory(**kwargs: Any) -> LangGraphStore:
        if "index" in kwargs:
            kwargs["index"] = index_config(kwargs["index"])
        if "ttl" in kwargs:
            kwargs["ttl"] = ttl_config(kwargs["ttl"])
        return LangGraphStore(await make_store(**kwargs))

    factory.backend = make_store.backend  # type: ignore[attr-defined]
    return factory
