"""A small layer over the `openai` client for any OpenAI-compatible endpoint.

- Bounded concurrency (a semaphore) and an optional requests-per-minute limit.
- Retries with jittered exponential backoff on 429 / 5xx / timeouts / connection errors, honouring
  `Retry-After`; 401/403 and `insufficient_quota` are fatal at once. The SDK's own retries are
  off, so the two never multiply.
- A content-addressed response cache in SQLite (the user's cache dir, `XDG_CACHE_HOME` honoured),
  written after every request: a crashed run re-run sends only what never finished, an
  identical re-run sends nothing. `offline` replays and fails on a miss; `refresh` ignores it.
- Accounting: requests sent, cache hits, retries, tokens; `max_requests` is a hard stop.
- A 200 that is not a usable chat completion (invalid JSON, an HTML page, `choices` empty or
  null, no `message`) is a failed attempt with its cause, retried like a 5xx. When retries run
  out the error names the endpoint URL, the attempts and the last cause (`RequestFailed`); callers
  count those and go on, while auth/quota/budget/offline errors stop the run. Once a request has
  failed every attempt on connection errors or timeouts and nothing has ever succeeded, later
  requests fail at once with the same cause instead of each waiting through its own retries.
- The API key is read from an environment variable and never printed, logged or cached: it and
  any `Authorization`/`Bearer` value are redacted from every error message and every answer
  (an endpoint may echo the request in an error body).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InstructgenError


class LLMError(InstructgenError):
    """A request that cannot succeed (auth, quota, offline miss, budget)."""


class RequestFailed(LLMError):
    """One request got no usable answer after its retries (timeouts, resets, 5xx, malformed 200s).

    The run can go on without it: generators count it as a failed request with `cause`.
    """

    def __init__(self, message: str, *, cause: str = "") -> None:  # default: unpicklable otherwise
        super().__init__(message)
        self.cause = cause


class MalformedResponse(Exception):
    """A 200 whose body is not a usable chat completion (retried like a server error)."""


_AUTH_VALUE = re.compile(
    r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token|digest|apikey)\s+)?[^\s\"',;}]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
REDACTED = "[REDACTED]"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` without the given secrets and without any Authorization or Bearer value."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _AUTH_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "instructgen"


@dataclass
class Usage:
    requests: int = 0  # sent over the network (retries included)
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed attempts by cause
    failed: dict[str, int] = field(default_factory=dict)  # requests that gave up, by last cause

    def summary(self) -> str:
        text = (
            f"llm: {self.requests} requests, {self.cache_hits} cache hits, {self.retries} retries, "
            f"{self.prompt_tokens} prompt + {self.completion_tokens} completion tokens"
        )
        if self.failed:
            causes = "; ".join(f"{v} x {k}" for k, v in sorted(self.failed.items()))
            text += f", {sum(self.failed.values())} failed requests ({causes})"
        return text


@dataclass(frozen=True)
class LLMConfig:
    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4
    rpm: float | None = None
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 120.0
    cache_dir: str | None = None
    offline: bool = False
    refresh: bool = False
    max_requests: int | None = None


class ResponseCache:
    """SQLite key -> response JSON; one commit per response, so a crash loses only what was in flight."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path))
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, body TEXT, created REAL)"
        )
        self.db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT body FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, body: dict[str, Any]) -> None:
        """Store an answer (the client redacts it first: no secret reaches the cache)."""
        self.db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)", (key, json.dumps(body), time.time())
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def cache_key(
    base_url: str | None,
    model: str,
    messages: list[dict[str, str]],
    params: dict[str, Any],
    sample_index: int,
) -> str:
    payload = json.dumps(
        {
            "base_url": base_url or "",
            "model": model,
            "messages": messages,
            "params": params,
            "sample": sample_index,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LLMClient:
    def __init__(self, config: LLMConfig) -> None:
        check_config(config)
        self.config = config
        self.usage = Usage()
        self.cache = ResponseCache(Path(config.cache_dir or default_cache_dir()) / "llm_cache.sqlite")
        self._client = None
        self._sem: asyncio.Semaphore | None = None
        self._rpm_lock: asyncio.Lock | None = None
        self._last_start = 0.0
        self._json_mode = True  # switched off when an endpoint rejects response_format
        self._successes = 0
        self._broken: str | None = None  # cause, once the endpoint never answered at all
        # known before the first request, so cache hits are redacted too
        self._secrets: tuple[str, ...] = (os.environ.get(config.api_key_env) or "",)

    @property
    def url(self) -> str:
        return self.config.base_url or "https://api.openai.com/v1"

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _openai(self):
        if self._client is None:
            from openai import AsyncOpenAI

            key = os.environ.get(self.config.api_key_env)
            if not key:
                if self.config.base_url is None:
                    raise LLMError(
                        f"set the API key in ${self.config.api_key_env} (or name another variable with "
                        "--api-key-env)"
                    )
                key = "not-needed"  # local servers (vLLM, Ollama) accept any key
            self._secrets = (key,)
            self._client = AsyncOpenAI(
                api_key=key, base_url=self.config.base_url, max_retries=0, timeout=self.config.timeout
            )
        return self._client

    async def _throttle(self) -> None:
        if not self.config.rpm:
            return
        assert self._rpm_lock is not None
        async with self._rpm_lock:
            gap = 60.0 / self.config.rpm
            wait = self._last_start + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_start = time.monotonic()

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        sample_index: int = 0,
        temperature: float = 0.8,
        max_tokens: int | None = None,
        json_mode: bool = True,
    ) -> str:
        """The assistant text for these messages (from the cache when possible)."""
        params = {"temperature": temperature, "max_tokens": max_tokens, "json": json_mode}
        key = cache_key(self.config.base_url, self.config.model, messages, params, sample_index)
        if not self.config.refresh:
            hit = self.cache.get(key)
            if hit is not None:
                self.usage.cache_hits += 1
                return self._redact(hit["content"])  # entries written before redaction existed
        if self.config.offline:
            raise LLMError("offline: a request is not in the cache (run once without --offline)")
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.config.concurrency)
            self._rpm_lock = asyncio.Lock()
        async with self._sem:
            body = await self._send(messages, temperature, max_tokens, json_mode)
        self.cache.put(key, body)
        return body["content"]

    async def _send(self, messages, temperature, max_tokens, json_mode) -> dict[str, Any]:
        import openai

        if self._broken is not None:
            raise RequestFailed(
                f"{self.url}: not sent: every attempt so far failed ({self._broken})", cause=self._broken
            )
        attempt = 0
        started = time.monotonic()
        network_only = True  # every failed attempt was a timeout or connection error
        while True:
            if self.config.max_requests is not None and self.usage.requests >= self.config.max_requests:
                raise LLMError(
                    f"--max-requests {self.config.max_requests} reached; re-run to resume from the cache"
                )
            await self._throttle()
            self.usage.requests += 1
            kwargs: dict[str, Any] = {
                "model": self.config.model,
                "messages": messages,
                "temperature": temperature,
            }
            if max_tokens:
                kwargs["max_tokens"] = max_tokens
            if json_mode and self._json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            try:
                resp = await self._openai().chat.completions.create(**kwargs)
                content, finish = _completion_content(resp)
            except openai.BadRequestError as exc:
                if "response_format" in kwargs and "response_format" in str(exc):
                    self._json_mode = False  # the endpoint does not support it: ask in the prompt only
                    continue
                raise LLMError(self._redact(f"the endpoint refused the request: {_short(exc)}")) from None
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise LLMError(
                    f"{self.url}: authentication failed ({exc.status_code}): check ${self.config.api_key_env}"
                ) from None
            except openai.RateLimitError as exc:
                if getattr(exc, "code", None) == "insufficient_quota" or "insufficient_quota" in str(exc):
                    raise LLMError("the account has no quota left (insufficient_quota)") from None
                delay, cause = self._delay(attempt, exc, "429 rate limited")
                network_only = False
            except openai.APIStatusError as exc:
                if exc.status_code < 500:
                    raise LLMError(
                        self._redact(f"{self.url}: the endpoint answered {exc.status_code}: {_short(exc)}")
                    ) from None
                delay, cause = self._delay(attempt, exc, f"{exc.status_code} {_short(exc, 120)}")
                network_only = False
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                what = (
                    f"no answer within {self.config.timeout:g} s (--timeout)"
                    if isinstance(exc, openai.APITimeoutError)
                    else f"connection failed: {_short(exc.__cause__ or exc, 120)}"
                )
                delay, cause = self._delay(attempt, exc, what)
            except (MalformedResponse, ValueError, openai.APIError) as exc:  # ValueError: invalid JSON body
                reason = str(exc) if isinstance(exc, MalformedResponse) else f"invalid JSON body ({exc})"
                delay, cause = self._delay(
                    attempt, exc, f"malformed response: {_short(Exception(reason), 160)}"
                )
                network_only = False
            else:
                usage = getattr(resp, "usage", None)
                if usage is not None:
                    self.usage.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
                    self.usage.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
                self._successes += 1
                return {"content": self._redact(content), "finish_reason": finish}
            attempt += 1
            if attempt > self.config.max_retries:
                self.usage.failed[cause] = self.usage.failed.get(cause, 0) + 1
                if network_only and self._successes == 0:
                    self._broken = cause
                raise RequestFailed(
                    f"{self.url}: no usable answer after {attempt} attempts in "
                    f"{time.monotonic() - started:.0f} s; last error: {cause}",
                    cause=cause,
                )
            self.usage.retries += 1
            await asyncio.sleep(delay)

    def _delay(self, attempt: int, exc: Exception, cause: str) -> tuple[float, str]:
        """(seconds to wait before the next attempt, the redacted cause), counting the cause."""
        cause = self._redact(cause)
        name = type(exc).__name__
        self.usage.errors[name] = self.usage.errors.get(name, 0) + 1
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            try:
                return min(float(retry_after), self.config.backoff_max), cause
            except ValueError:
                pass
        base = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        return base * (0.5 + random.random() / 2), cause  # jitter: retries of many workers do not align

    def close(self) -> None:
        self.cache.close()


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) < limit else text[:limit] + "..."


def _completion_content(resp: Any) -> tuple[str, str | None]:
    """(content, finish_reason) of a chat completion; `MalformedResponse` when it is not one."""
    choices = getattr(resp, "choices", _MISSING)
    if choices is _MISSING:
        body = resp if isinstance(resp, str) else json.dumps(resp, default=str)[:200]
        kind = (
            "an HTML page"
            if isinstance(resp, str) and "<html" in resp[:500].lower()
            else "not a chat completion"
        )
        raise MalformedResponse(f"the body is {kind}: {' '.join(str(body).split())[:120]}")
    if choices is None:
        raise MalformedResponse("'choices' is null")
    if not choices:
        raise MalformedResponse("'choices' is empty")
    message = getattr(choices[0], "message", None)
    if message is None:
        raise MalformedResponse("the first choice has no 'message'")
    content = getattr(message, "content", None)
    if content is not None and not isinstance(content, str):
        raise MalformedResponse(f"'message.content' is {type(content).__name__}, not text")
    return content or "", getattr(choices[0], "finish_reason", None)


_MISSING = object()


def check_config(config: LLMConfig) -> None:
    """Settings that would hang or loop instead of failing: a semaphore of 0 never lets a request through."""
    if config.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if config.rpm is not None and config.rpm <= 0:
        raise ConfigError("--rpm must be positive")
