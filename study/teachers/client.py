"""One OpenAI-compatible chat client for every teacher kind (program, hf, vLLM, API).

Async with bounded concurrency, a per-request timeout, and retries on 429, 5xx and timeouts: after
the server's `Retry-After` when it sends one (seconds or an HTTP date, at most MAX_RETRY_AFTER_S),
else an exponential backoff with jitter (so many clients refused at once do not retry at once).
Progress (rows done, rows/s, completion tokens/s) is a bar on a terminal, log lines otherwise. Each reply is
handed to `on_reply` as it arrives, so a caller can save finished rows before the rest are done.
The API key is sent as a header and never printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from study.core.console import Progress

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER_S = 300.0  # a longer Retry-After is waited this long (the request is retried, not given up)


class TeacherError(RuntimeError):
    """A teacher request that failed for good (after retries, or on a non-retryable error)."""


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def body(self) -> dict:
        body = {"model": self.model, "messages": self.messages, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p}
        return body if self.seed is None else {**body, "seed": self.seed}

    @property
    def key(self) -> str:
        """Content address of the request: model, sampling, prompt and question."""
        return hashlib.sha256(json.dumps(self.body(), sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ChatReply:
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ChatClient:
    base_url: str  # up to and including /v1
    api_key: str | None = field(default=None, repr=False)
    max_concurrency: int = 16
    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_s: float = 0.5

    def complete_all(self, requests: list[ChatRequest], label: str = "teacher",
                     on_reply: Callable[[ChatRequest, ChatReply], None] | None = None) -> list[ChatReply]:
        """All replies, in request order; raises TeacherError if any request fails for good
        (the replies that did arrive have been handed to `on_reply`)."""
        return asyncio.run(self._complete_all(requests, label, on_reply))

    def list_models(self) -> list[str]:
        """The model names the endpoint serves (GET /models); TeacherError if it cannot be reached."""
        try:
            response = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=self.timeout_s)
        except httpx.HTTPError as error:
            raise TeacherError(f"cannot reach the teacher at {self.base_url}: {type(error).__name__}: {error}") from None
        if response.status_code != 200:
            raise TeacherError(f"teacher at {self.base_url}: GET /models answered HTTP {response.status_code}: "
                               f"{response.text[:200]}")
        return [entry["id"] for entry in response.json().get("data", [])]

    def check_model(self, model: str) -> None:
        """Before any row: the endpoint answers and serves `model`."""
        served = self.list_models()
        if model not in served:
            raise TeacherError(f"teacher at {self.base_url} does not serve model '{model}'; it serves {served[:10]}")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    async def _complete_all(self, requests: list[ChatRequest], label: str,
                            on_reply: Callable[[ChatRequest, ChatReply], None] | None) -> list[ChatReply]:
        limit = asyncio.Semaphore(self.max_concurrency)
        progress = _RowProgress(label, len(requests))
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers(), timeout=self.timeout_s) as http:

            async def one(request: ChatRequest) -> ChatReply:
                async with limit:
                    reply = await self._complete(http, request)
                if on_reply is not None:
                    on_reply(request, reply)
                progress.advance(reply.completion_tokens)
                return reply

            replies = await asyncio.gather(*(one(r) for r in requests))
        progress.finish()
        return list(replies)

    async def _complete(self, http: httpx.AsyncClient, request: ChatRequest) -> ChatReply:
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = await http.post("/chat/completions", json=request.body())
            except (httpx.TimeoutException, httpx.TransportError) as error:
                last_problem = f"{type(error).__name__}: {error}"
            else:
                if response.status_code == 200:
                    return _parse_reply(response.json())
                last_problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    break
                retry_after = retry_after_s(response.headers.get("retry-after"))
            if attempt < self.max_retries:
                await asyncio.sleep(retry_after if retry_after is not None else self.backoff(attempt))
        raise TeacherError(f"teacher at {self.base_url} failed for model '{request.model}': {last_problem}")

    def backoff(self, attempt: int) -> float:
        """Seconds before retry `attempt` + 1 when the server named no time: backoff_s x 2^attempt,
        scaled by a random factor in [0.5, 1.5)."""
        return self.backoff_s * 2**attempt * random.uniform(0.5, 1.5)


def retry_after_s(header: str | None) -> float | None:
    """A `Retry-After` header in seconds (it holds seconds or an HTTP date); None when absent or
    unreadable; at most MAX_RETRY_AFTER_S."""
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(header) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _parse_reply(payload: dict) -> ChatReply:
    usage = payload.get("usage") or {}
    return ChatReply(
        text=payload["choices"][0]["message"]["content"],
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


class _RowProgress:
    """Rows done of a corpus, with rows/s and completion tokens/s (study.core.console.Progress)."""

    def __init__(self, label: str, total: int) -> None:
        self.progress = Progress(label, total, "rows", log)
        self.tokens = 0
        self.started = time.monotonic()

    def advance(self, completion_tokens: int) -> None:
        self.tokens += completion_tokens
        self.progress.advance(1, self._rates())

    def finish(self) -> None:
        self.progress.finish(self._rates())

    def _rates(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return f"{self.progress.done / elapsed:.1f} rows/s, {self.tokens / elapsed:.0f} tokens/s"
