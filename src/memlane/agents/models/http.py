"""The HTTP part shared by the provider clients: JSON POSTs with retries, backoff, timeouts.

One ``httpx.AsyncClient`` is kept per event loop (an ``anyio`` RunVar), so thousands of
concurrent calls share its connection pool, and a client never outlives the loop it was
made on (``agent.invoke`` runs each call on a fresh loop and closes it afterwards).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import Any

import anyio
import httpx
import orjson
from anyio.lowlevel import RunVar

from memlane.agents.models.base import (
    ModelAPIError,
    ModelConnectionError,
    ModelTimeoutError,
)

__all__ = ["RETRY_STATUSES", "JsonHttpClient"]

log = logging.getLogger(__name__)
"""Each retried failure at WARNING (status or transport error, attempt, delay)."""

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def _retry_after(response: httpx.Response) -> float | None:
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = response.headers.get(header)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) * scale)
        except ValueError:
            return None
    return None


def _error_text(body: Any, response: httpx.Response) -> tuple[str, str]:
    """The provider's own error type and message, from either API's error shape."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            return str(err.get("type") or err.get("code") or ""), str(err.get("message") or "")
        if isinstance(err, str):
            return "", err
    return "", response.text[:500]


class JsonHttpClient:
    """POSTs JSON to one provider, retrying 429/5xx and transport failures with backoff."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        headers: Mapping[str, str],
        key_hint: str,
        timeout: float,
        max_retries: int,
        backoff: float,
        max_backoff: float = 20.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.headers = {"content-type": "application/json", **headers}
        self.key_hint = key_hint
        self.timeout = httpx.Timeout(timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._shared = http_client
        self._per_loop: RunVar[httpx.AsyncClient | None] = RunVar(
            f"memlane-http-{id(self)}", default=None
        )

    def _client(self) -> httpx.AsyncClient:
        if self._shared is not None:
            return self._shared
        client = self._per_loop.get()
        if client is None:
            client = httpx.AsyncClient(
                timeout=self.timeout,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
            self._per_loop.set(client)
        return client

    async def aclose(self) -> None:
        """Close this loop's client (a client passed in by the caller is theirs to close)."""
        client = self._per_loop.get()
        if client is not None:
            self._per_loop.set(None)
            await client.aclose()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        hinted = _retry_after(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_backoff)
        base = min(self.max_backoff, self.backoff * (2**attempt))
        return float(base * (0.5 + random.random() / 2))

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """The decoded JSON reply; raises a ``ModelError`` subclass once retries run out."""
        url = f"{self.base_url}{path}"
        payload = orjson.dumps(body)
        client = self._client()
        attempt = 0
        while True:
            try:
                response = await client.post(url, content=payload, headers=self.headers)
            except httpx.TransportError as exc:  # timeouts included: retried the same way
                if attempt >= self.max_retries:
                    raise self._transport_error(exc, url, attempt) from exc
                delay = self._delay(attempt, None)
                self._log_retry(f"{type(exc).__name__}: {exc}", url, attempt, delay, exc)
                await anyio.sleep(delay)
                attempt += 1
                continue
            if response.status_code < 400:
                try:
                    data = orjson.loads(response.content)
                except orjson.JSONDecodeError as exc:
                    raise ModelAPIError(
                        f"{self.provider} returned a reply that is not JSON: "
                        f"{response.text[:200]!r}",
                        status_code=response.status_code,
                    ) from exc
                if not isinstance(data, dict):
                    raise ModelAPIError(
                        f"{self.provider} returned JSON that is not an object",
                        status_code=response.status_code,
                        body=data,
                    )
                return data
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                delay = self._delay(attempt, response)
                self._log_retry(f"HTTP {response.status_code}", url, attempt, delay, None)
                await anyio.sleep(delay)
                attempt += 1
                continue
            raise self._error(response, attempt)

    def _log_retry(
        self, what: str, url: str, attempt: int, delay: float, exc: Exception | None
    ) -> None:
        log.warning(
            "%s: %s from %s; retry %d of %d in %.2fs",
            self.provider, what, url, attempt + 1, self.max_retries, delay,
        )
        if exc is not None and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s: traceback", self.provider, url, exc_info=exc)

    def _transport_error(
        self, exc: httpx.TransportError, url: str, attempt: int
    ) -> ModelTimeoutError | ModelConnectionError:
        tries = f"(after {attempt + 1} attempts)"
        if isinstance(exc, httpx.TimeoutException):
            return ModelTimeoutError(
                f"{self.provider} did not answer within {self.timeout.read}s at {url} {tries}"
            )
        return ModelConnectionError(f"cannot reach {self.provider} at {url}: {exc!r} {tries}")

    def _error(self, response: httpx.Response, attempt: int) -> ModelAPIError:
        try:
            body: Any = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        kind, message = _error_text(body, response)
        status = response.status_code
        text = f"{self.provider} API error {status}"
        if kind:
            text += f" ({kind})"
        text += f": {message or response.reason_phrase}"
        if status in (401, 403):
            text += f" - check {self.key_hint}"
        elif attempt:
            text += f" (after {attempt + 1} attempts)"
        return ModelAPIError(text, status_code=status, body=body)
