"""Question generation through any OpenAI-compatible chat completions server.

OpenAI itself, vLLM, Ollama, llama.cpp's server, LM Studio, TGI: anything that speaks
``POST /v1/chat/completions``. Calls run concurrently (``concurrency`` at a time) through the
``openai`` SDK's ``AsyncOpenAI`` with the SDK's own retries switched off, so that the policy is
ours, logged and tested: retry 429, 5xx, timeouts, dropped connections and malformed replies
with exponential backoff and jitter, waiting at least what a ``Retry-After`` header asks; stop at
once on 401/403/404, and on 405/501 (a server that does not do chat completions), with a message
naming the server, the model and the key variable::

    backend = OpenAIBackend(cfg.generate)
    reply = asyncio.run(backend.complete("Write two questions about ..."))
    reply.text, reply.usage

JSON output is requested with ``response_format={"type": "json_object"}``; a server that
rejects it with a 400 is asked again in plain text, and the choice sticks for the rest of the
run.

OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 and their variants) refuse ``max_tokens``,
``temperature`` and ``top_p`` with a 400 "Unsupported parameter" (or "Unsupported value"). Known
by name, they are sent ``max_completion_tokens`` with room for their hidden reasoning, and
``reasoning_effort="low"``, without sampling knobs. Any other model or server that refuses one
of these parameters the same way is asked again without it (``max_tokens`` becomes
``max_completion_tokens``), once: the choice sticks for the rest of the run.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import openai

from embedtune.config import GenerateConfig
from embedtune.errors import ConfigError, GenerationError
from embedtune.generate.prompts import to_messages

__all__ = [
    "OpenAIBackend",
    "Completion",
    "resolve_api_key",
    "missing_key_warning",
    "is_openai_host",
    "is_reasoning_model",
]

log = logging.getLogger("embedtune.generate")

#: Statuses that say the server does not do chat completions at all (not a passing failure):
#: 501 Not Implemented (a plain web server's answer to POST), 505, and 405 Method Not Allowed.
NOT_IMPLEMENTED = {405, 501, 505}

#: First backoff delay in seconds (doubled per retry, with jitter, up to ``max_delay``).
INITIAL_DELAY = 0.5
#: Local servers (vLLM, Ollama, llama.cpp) accept any key; the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"
#: Tokens added to a reasoning model's max_completion_tokens for its hidden reasoning, which
#: counts against that limit: with only the reply's budget, it may stop before writing a word.
REASONING_ALLOWANCE = 2048
#: Request parameters that a server may refuse and that can be left out (the server's default
#: then applies). max_tokens is renamed instead: see ``OpenAIBackend._adapt``.
_OPTIONAL_PARAMS = ("temperature", "top_p", "seed", "reasoning_effort")
_REASONING_MODEL = re.compile(r"^(o\d+|gpt-5)(?![\w.-]*-chat)([\w.:-]*)$")
_UNSUPPORTED = re.compile(r"unsupported (?:parameter|value)[^']*'([\w.]+)'", re.I)
#: Seconds to open a connection (reads may take generate.timeout), and attempts at a server that
#: refuses or never accepts one: a server that is not there is said within ~20 s, not minutes.
CONNECT_TIMEOUT = 5.0
CONNECT_ATTEMPTS = 3


@dataclass
class Completion:
    """One reply: its text and the token usage the server reported (if any)."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    attempts: int = 1
    json_mode: bool = False


def is_openai_host(base_url: str | None) -> bool:
    return base_url is None or "api.openai.com" in base_url


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` names one of OpenAI's reasoning models (o1, o3-mini, o4-mini, gpt-5,
    gpt-5.1-mini, ...), which take ``max_completion_tokens`` and no sampling knobs. gpt-5's
    chat variants (gpt-5-chat-latest) are not reasoning models."""
    name = model.strip().lower().rsplit("/", 1)[-1]  # "openai/o3" on routers
    return bool(_REASONING_MODEL.match(name))


def missing_key_warning(
    cfg: GenerateConfig, environ: Mapping[str, str] | None = None
) -> str | None:
    """What a dry run should say when the real run would stop at once for want of an API key
    (OpenAI's own API with the key variable unset), else None."""
    env = os.environ if environ is None else environ
    if env.get(cfg.api_key_env, "").strip() or not is_openai_host(cfg.base_url):
        return None
    return (
        f"the environment variable {cfg.api_key_env} is not set: the real run will stop at once. "
        f"Set it to your OpenAI API key (generate.api_key_env names the variable)"
    )


def resolve_api_key(cfg: GenerateConfig, environ: Mapping[str, str] | None = None) -> str:
    """The API key from the variable ``cfg.api_key_env``; a placeholder for local servers."""
    env = os.environ if environ is None else environ
    key = env.get(cfg.api_key_env, "").strip()
    if key:
        return key
    if is_openai_host(cfg.base_url):
        raise ConfigError(
            f"no API key for {cfg.base_url or 'https://api.openai.com/v1'}: set the environment "
            f"variable {cfg.api_key_env} (generate.api_key_env names it), or point "
            "generate.base_url at a local server, or use the offline model with "
            "generate.backend=local"
        )
    return PLACEHOLDER_KEY


def _retry_after(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_tz(raw)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


class OpenAIBackend:
    """Chat completions with our own retry policy; see the module docstring."""

    name = "openai"

    def __init__(
        self,
        cfg: GenerateConfig,
        *,
        environ: Mapping[str, str] | None = None,
        initial_delay: float | None = None,
        max_delay: float = 30.0,
        max_retry_after: float = 300.0,
        check_key: bool = True,
    ) -> None:
        if not cfg.model:
            raise ConfigError(
                "generate.model is not set: name the model to call, e.g. --model gpt-4o-mini "
                "(or a model your server at generate.base_url serves)"
            )
        self.cfg = cfg
        self.model = cfg.model
        self.base_url = cfg.base_url or "https://api.openai.com/v1"
        self.initial_delay = INITIAL_DELAY if initial_delay is None else initial_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.json_mode = True
        self.retries = 0
        # What this model takes, learnt from its name, then from the 400s it answers (see _adapt).
        self.reasoning = is_reasoning_model(self.model)
        self.token_param = "max_completion_tokens" if self.reasoning else "max_tokens"
        self.refused: set[str] = {"temperature", "top_p"} if self.reasoning else set()
        # A dry run may plan (and price) a run before any key is set; it says so.
        self._api_key = resolve_api_key(cfg, environ) if check_key else PLACEHOLDER_KEY
        if not check_key and (warning := missing_key_warning(cfg, environ)):
            log.warning("%s", warning)
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=openai.Timeout(
                    self.cfg.timeout, connect=min(CONNECT_TIMEOUT, self.cfg.timeout)
                ),
                max_retries=0,  # our policy below: logged, honours Retry-After, tested
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def sampling(self) -> dict[str, Any]:
        """The settings that shape a reply (part of the cache key)."""
        return {
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            "max_tokens": self.cfg.max_tokens,
            "seed": self.cfg.seed,
        }

    def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The chat completion's parameters, without those this model refuses."""
        limit = self.cfg.max_tokens + (REASONING_ALLOWANCE if self.reasoning else 0)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            self.token_param: limit,
            "seed": self.cfg.seed,
        }
        if self.reasoning:
            kwargs["reasoning_effort"] = "low"  # two questions need little thought, and cost less
        return {k: v for k, v in kwargs.items() if k not in self.refused}

    def _adapt(self, exc: Any, sent: dict[str, Any]) -> bool:
        """After a 400 that refuses one of our parameters ("Unsupported parameter: 'max_tokens'
        ... Use 'max_completion_tokens' instead", "Unsupported value: 'temperature' does not
        support 0.7"), stop sending it for the rest of the run; False if the 400 is not that."""
        detail = _error_detail(exc)
        param = getattr(exc, "param", None)
        if not param:
            m = _UNSUPPORTED.search(detail)
            param = m.group(1) if m else None
        code = str(getattr(exc, "code", None) or "")
        if not param or not (code.startswith("unsupported") or _UNSUPPORTED.search(detail)):
            return False
        if param not in sent:
            return False
        if param in self.refused:
            return True  # a concurrent request learnt it meanwhile: ask again without it
        if param in ("max_tokens", "max_completion_tokens"):
            # OpenAI's newer name, or back to the older one for a server that knows only that
            other = "max_tokens" if param == "max_completion_tokens" else "max_completion_tokens"
            if other in self.refused:
                return False
            self.token_param = other
            self.refused.add(param)
            what = f"sending {other} instead"
        elif param in _OPTIONAL_PARAMS:
            self.refused.add(param)
            what = "leaving it out (the server's default applies)"
        else:
            return False
        log.warning(
            "%s refused %r for model %r (%s); %s for the rest of the run",
            self.base_url,
            param,
            self.model,
            detail,
            what,
        )
        return True

    def _delay(self, attempt: int, headers: Any) -> float:
        asked = _retry_after(headers)
        backoff = min(self.initial_delay * 2**attempt, self.max_delay)
        backoff *= 0.5 + random.random() / 2  # jitter spreads out clients that failed together
        if asked:  # the server knows when it will have capacity again: wait exactly that long
            return min(asked, self.max_retry_after)
        return backoff

    def _fatal(self, exc: Any) -> GenerationError:
        status = getattr(exc, "status_code", None)
        detail = _error_detail(exc)
        if status == 401:
            what = (
                f"the server at {self.base_url} rejected the API key for model {self.model!r} "
                f"(401 Unauthorized): set a valid key in the environment variable "
                f"{self.cfg.api_key_env}"
            )
        elif status == 403:
            what = (
                f"the server at {self.base_url} refused access to model {self.model!r} (403): "
                f"check the key in {self.cfg.api_key_env} has access to it"
            )
        else:
            what = (
                f"model {self.model!r} was not found at {self.base_url} (404): check "
                "generate.model (--model) and generate.base_url (--base-url); the URL usually "
                "ends in /v1"
            )
        return GenerationError(f"{what}. Server said: {detail}")

    async def complete(self, prompt: str) -> Completion:
        """One chat completion with retries; raises GenerationError when it cannot succeed."""
        client = self._get_client()
        attempt = 0
        while True:
            kwargs = self._request(to_messages(prompt))
            json_mode = self.json_mode
            if json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            headers, unreachable = None, None
            try:
                resp = await client.chat.completions.create(**kwargs)
                choices = getattr(resp, "choices", None)
                if not choices or choices[0].message is None:
                    raise _Malformed(f"reply without choices: {str(resp)[:200]}")
                text = choices[0].message.content or ""
                if not text and getattr(choices[0], "finish_reason", None) == "length":
                    raise _Malformed(
                        f"the reply stopped at {kwargs[self.token_param]} tokens before any "
                        "text (a reasoning model spends hidden tokens from the same budget); "
                        "raise generate.max_tokens"
                    )
                usage = {}
                if getattr(resp, "usage", None) is not None:
                    usage = {
                        "prompt_tokens": resp.usage.prompt_tokens or 0,
                        "completion_tokens": resp.usage.completion_tokens or 0,
                    }
                return Completion(text, usage, attempt + 1, json_mode)
            except (
                openai.AuthenticationError,
                openai.PermissionDeniedError,
                openai.NotFoundError,
            ) as exc:
                raise self._fatal(exc) from None
            except openai.BadRequestError as exc:
                if self._adapt(exc, kwargs):
                    continue
                if json_mode and _mentions_response_format(exc):
                    log.warning(
                        "%s rejected response_format=json_object (%s); asking in plain text",
                        self.base_url,
                        _error_detail(exc),
                    )
                    self.json_mode = False
                    continue
                raise GenerationError(
                    f"the server at {self.base_url} rejected a request for model {self.model!r} "
                    f"(400 Bad Request): {_error_detail(exc)}"
                ) from None
            except openai.APIStatusError as exc:
                if exc.status_code in NOT_IMPLEMENTED:
                    raise GenerationError(
                        f"the server at {self.base_url} does not serve chat completions "
                        f"({exc.status_code}): is it an OpenAI-compatible server? Check "
                        "generate.base_url (--base-url); the URL usually ends in /v1"
                    ) from None
                if exc.status_code != 429 and exc.status_code < 500:
                    raise GenerationError(
                        f"the server at {self.base_url} answered {exc.status_code} for model "
                        f"{self.model!r}: {_error_detail(exc)}"
                    ) from None
                reason = f"{exc.status_code} {_error_detail(exc)}"
                headers = exc.response.headers
            except openai.APIConnectionError as exc:  # and APITimeoutError, its subclass
                unreachable = _unreachable(exc, min(CONNECT_TIMEOUT, self.cfg.timeout))
                if isinstance(exc, openai.APITimeoutError):
                    reason = unreachable or f"timed out after {self.cfg.timeout:g} s"
                else:
                    reason = unreachable or f"connection error ({exc.__cause__ or exc})"
            except (openai.APIResponseValidationError, _Malformed, ValueError) as exc:
                reason = f"malformed reply ({str(exc)[:200]})"
            retries = self.cfg.max_retries
            if unreachable:
                retries = min(retries, CONNECT_ATTEMPTS - 1)
                if attempt >= retries:
                    raise GenerationError(
                        f"the server at {self.base_url} {unreachable}: is it running? Check "
                        "generate.base_url (--base-url)"
                    )
            if attempt >= retries:
                raise GenerationError(
                    f"gave up after {attempt + 1} attempts at {self.base_url} (model "
                    f"{self.model!r}): last error {reason}. Raise generate.max_retries or "
                    "generate.timeout, or lower --concurrency; finished calls are cached, so "
                    "rerunning resumes"
                )
            delay = self._delay(attempt, headers)
            self.retries += 1
            log.warning("retry %d/%d in %.2f s: %s", attempt + 1, retries, delay, reason)
            await asyncio.sleep(delay)
            attempt += 1


class _Malformed(Exception):
    pass


def _unreachable(exc: BaseException, connect_timeout: float) -> str | None:
    """How the server could not be reached ('refused the connection', ...), or None when the
    failure came after a connection was made."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "refused the connection"
        if type(seen).__name__ == "ConnectTimeout":
            return f"did not accept a connection within {connect_timeout:g} s"
        seen = seen.__cause__ or seen.__context__
    return None


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return str(getattr(exc, "message", exc))[:300]


def _mentions_response_format(exc: Any) -> bool:
    text = (_error_detail(exc) + " " + str(getattr(exc, "body", ""))).lower()
    return "response_format" in text or "json" in text or "format" in text
