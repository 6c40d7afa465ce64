"""The LLM generator: any OpenAI-compatible chat-completions endpoint through langchain-openai.

OpenAI itself, vLLM, Ollama, llama.cpp server, LM Studio… are reached by `OPENAI_BASE_URL`; the
client retries transient failures (connection errors, 408/409/429/5xx) with exponential backoff
(`ASSISTANT_LLM_MAX_RETRIES`). Failures become a `GenerationError` with a message for the user — the
API key never appears in it.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

from assistant.config import Settings
from assistant.generation import DECLINE, Generation, GenerationError, GenerationRequest
from assistant.generation.prompts import LANGUAGES, SYSTEM, USER, approx_tokens, fit_passages, history_block
from assistant.language import fold

ANSWER_RESERVE = 700  # tokens kept free for the answer
_DECLINE_PATTERNS = re.compile(
    r"ne (?:le )?disent pas|ne contiennent pas|ne mentionnent pas|ne precisent pas|n'indiquent pas|ne figure pas"
    r"|ne donnent pas|aucune information|do not say|don't say|does not say|do not contain|does not contain"
    r"|don't contain|do not mention|does not mention|do not provide|not in the (?:sources|documents|passages)"
    r"|no information|cannot follow this request|je ne peux pas donner suite"
)
_MARKER = re.compile(r"\[\s*\d+(?:\s*[,;–-]\s*\d+)*\s*\]")


def is_decline(text: str) -> bool:
    """The model said the sources do not contain the answer (and cited nothing)."""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    return bool(_DECLINE_PATTERNS.search(fold(first))) and not _MARKER.search(text)


class OpenAIGenerator:
    name = "openai"

    def __init__(self, settings: Settings):
        from langchain_openai import ChatOpenAI

        self.settings = settings
        self.model = settings.llm_model
        self.base_url = settings.openai_base_url or "https://api.openai.com/v1"
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self.llm = ChatOpenAI(
            model=settings.llm_model,
            base_url=settings.openai_base_url,
            # local servers (Ollama, llama.cpp…) ignore the key, but the client insists on one
            api_key=key or "not-needed",
            temperature=settings.llm_temperature,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )

    # --- prompt
    def messages(self, request: GenerationRequest) -> tuple[list, int]:
        from langchain_core.messages import HumanMessage, SystemMessage

        lang = request.lang
        system = SYSTEM.format(language=LANGUAGES.get(lang, "French"), decline=DECLINE[lang])
        history = history_block(request.history)
        skeleton = USER.format(passages="", history=history, question=request.question)
        budget = self.settings.llm_max_context_tokens - approx_tokens(system + skeleton) - ANSWER_RESERVE
        blocks = fit_passages(request.passages, max(budget, 200))
        user = USER.format(passages="\n\n".join(blocks), history=history, question=request.question)
        return [SystemMessage(system), HumanMessage(user)], len(blocks)

    # --- calls
    def generate(self, request: GenerationRequest) -> Generation:
        messages, used = self.messages(request)
        try:
            reply = self.llm.invoke(messages)
        except Exception as exc:  # noqa: BLE001 — turned into a message for the user
            raise self._error(exc) from None
        text = reply.content if isinstance(reply.content, str) else _join(reply.content)
        return self._finish(text, used, request)

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        messages, used = self.messages(request)
        parts: list[str] = []
        try:
            for chunk in self.llm.stream(messages):
                piece = chunk.content if isinstance(chunk.content, str) else _join(chunk.content)
                if piece:
                    parts.append(piece)
                    yield piece
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        yield self._finish("".join(parts), used, request)

    def _finish(self, text: str, used: int, request: GenerationRequest) -> Generation:
        text = (text or "").strip()
        if not text:
            raise GenerationError(f"The language model at {self.base_url} returned an empty answer.")
        if is_decline(text):
            return Generation(text=DECLINE[request.lang], declined=True, used=used)
        return Generation(text=text, declined=False, used=used)

    def _error(self, exc: Exception) -> GenerationError:
        return GenerationError(describe_error(exc, self.base_url, self.model, self.settings.llm_timeout))


def describe_error(exc: Exception, base_url: str, model: str, timeout: float) -> str:
    """A readable, secret-free message for a failed call."""
    import openai

    where = f"The language model endpoint at {base_url}"
    if isinstance(exc, openai.APITimeoutError):
        return f"{where} did not answer within {timeout:g} s (timed out). Try again, or raise ASSISTANT_LLM_TIMEOUT."
    if isinstance(exc, openai.APIConnectionError):
        return f"{where} is unreachable (connection failed). Check OPENAI_BASE_URL and that the server is running."
    if isinstance(exc, openai.AuthenticationError):
        return f"{where} rejected the API key (HTTP 401). Check OPENAI_API_KEY."
    if isinstance(exc, openai.NotFoundError):
        return f"{where} does not know the model {model!r} (HTTP 404). Check ASSISTANT_LLM_MODEL."
    if isinstance(exc, openai.RateLimitError):
        return f"{where} is rate limiting requests (HTTP 429). Wait a moment and try again."
    if isinstance(exc, openai.APIStatusError):
        return f"{where} returned an error (HTTP {exc.status_code}). Try again later."
    if isinstance(exc, (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, KeyError, TypeError,
                        AttributeError)):
        return f"{where} returned a malformed response that is not an OpenAI chat completion."
    return f"{where} failed ({type(exc).__name__})."


def _join(content) -> str:
    return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content or [])
