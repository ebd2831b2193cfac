"""One OpenAI-compatible chat client for every teacher kind (program, hf, vLLM, API).

Async with bounded concurrency, a per-request timeout, and retries with backoff on 429, 5xx
and timeouts. Progress is printed as rows done, rows/s and completion tokens/s. Each reply is
handed to `on_reply` as it arrives, so a caller can save finished rows before the rest are done.
The API key is sent as a header and never printed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

RETRY_STATUS = {429, 500, 502, 503, 504}


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
        progress = _Progress(label, len(requests))
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
            await asyncio.sleep(self.backoff_s * 2**attempt)
        raise TeacherError(f"teacher at {self.base_url} failed for model '{request.model}': {last_problem}")


def _parse_reply(payload: dict) -> ChatReply:
    usage = payload.get("usage") or {}
    return ChatReply(
        text=payload["choices"][0]["message"]["content"],
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


class _Progress:
    """Prints a line at each tenth of the rows: done/total, rows/s and completion tokens/s."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.tokens = label, total, 0, 0
        self.started = time.monotonic()
        self.step = max(1, total // 10)

    def advance(self, completion_tokens: int) -> None:
        self.done += 1
        self.tokens += completion_tokens
        if self.done % self.step == 0 and self.done < self.total:
            self._print()

    def finish(self) -> None:
        self._print()

    def _print(self) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        print(f"  {self.label}: {self.done}/{self.total} rows, {self.done / elapsed:.1f} rows/s, "
              f"{self.tokens / elapsed:.0f} tokens/s", flush=True)
