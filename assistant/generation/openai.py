"""The LLM generator: any OpenAI-compatible chat-completions endpoint through langchain-openai.

OpenAI itself, vLLM, Ollama, llama.cpp server, LM Studio… are reached by `OPENAI_BASE_URL`; with
`ASSISTANT_LOCAL_MODEL` a GGUF file is served on loopback by llama.cpp's own server (assistant.llm_server).

Time: `ASSISTANT_LLM_TIMEOUT` is the whole budget of one question — the follow-up rewrite, the answer
and every retry share one deadline. Transient failures (connection errors, 408/409/429/5xx) are retried
with exponential backoff (`ASSISTANT_LLM_MAX_RETRIES`) only while the budget lasts; a stream that has begun
is never retried, and one that stalls or drips past the deadline is closed. Failures become a
`GenerationError` with a message for the user — the API key never appears in it.

Output: `text` (sentences ending in [n] markers) or `json_schema` (sentences with passage numbers and a
verbatim quote each, asked for by `response_format`; a sentence whose quote is not in its passages is
dropped before the chain's own verification; a server that refuses `response_format` gets text instead).
"""
from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from typing import Callable, Iterable, Iterator

from assistant.config import Settings
from assistant.generation import DECLINE, Generation, GenerationError, GenerationRequest
from assistant.generation.prompts import (
    LANGUAGES,
    SYSTEM,
    SYSTEM_JSON,
    USER,
    answer_schema,
    approx_tokens,
    fit_passages,
    history_block,
)
from assistant.language import fold

log = logging.getLogger(__name__)

ANSWER_RESERVE = 700  # tokens kept free for the answer
# approx_tokens counts 4 characters a token; small models cut French finer (SmolLM2's tokenizer: 2.8 characters
# a token on the knowledge base), so the context budget is spent at a safe 2.5 characters a token
SAFE_CHARS_PER_TOKEN = 2.5
RETRY_BASE = 0.5  # seconds before the first retry, doubled each time
RETRY_MAX = 8.0
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


class OutOfTime(TimeoutError):
    """The question's LLM budget (ASSISTANT_LLM_TIMEOUT) ran out."""


def deadline_for(settings: Settings, deadline: float | None = None) -> float:
    return deadline if deadline is not None else time.monotonic() + settings.llm_timeout


class OpenAIGenerator:
    name = "openai"

    def __init__(self, settings: Settings):
        from langchain_openai import ChatOpenAI

        if settings.local_model and not settings.openai_base_url:
            from assistant.llm_server import ensure_local_server

            settings = ensure_local_server(settings)  # starts llama.cpp's server on loopback (once a process)
        self.settings = settings
        self.model = settings.llm_model
        self.base_url = settings.openai_base_url or "https://api.openai.com/v1"
        self.json_output = settings.llm_output == "json_schema"
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        self.llm = ChatOpenAI(
            model=settings.llm_model,
            base_url=settings.openai_base_url,
            # local servers (Ollama, llama.cpp…) ignore the key, but the client insists on one
            api_key=key or "not-needed",
            temperature=settings.llm_temperature,
            timeout=settings.llm_timeout,
            max_retries=0,  # retries are ours, within the question's budget
            max_tokens=settings.llm_max_tokens,
            seed=settings.llm_seed,
        )

    # --- prompt
    def messages(self, request: GenerationRequest, structured: bool = False) -> tuple[list, int]:
        from langchain_core.messages import HumanMessage, SystemMessage

        lang = request.lang
        template = SYSTEM_JSON if structured else SYSTEM
        system = template.format(language=LANGUAGES.get(lang, "French"), decline=DECLINE[lang])
        history = history_block(request.history)
        skeleton = USER.format(passages="", history=history, question=request.question)
        room = self.settings.llm_max_context_tokens - max(ANSWER_RESERVE, self.settings.llm_max_tokens or 0)
        budget = int(room * SAFE_CHARS_PER_TOKEN / 4) - approx_tokens(system + skeleton)  # in approx_tokens units
        blocks = fit_passages(request.passages, max(budget, 200))
        user = USER.format(passages="\n\n".join(blocks), history=history, question=request.question)
        return [SystemMessage(system), HumanMessage(user)], len(blocks)

    # --- calls
    def generate(self, request: GenerationRequest) -> Generation:
        deadline = deadline_for(self.settings, request.deadline)
        if self.json_output:
            structured = self._structured(request, deadline)
            if structured is not None:
                return structured
        messages, used = self.messages(request)
        try:
            reply = self._retrying(lambda: self._within(deadline, lambda left: [self.llm.invoke(messages, timeout=left)]),
                                   deadline)[0]
        except Exception as exc:  # noqa: BLE001 — turned into a message for the user
            raise self._error(exc) from None
        text = reply.content if isinstance(reply.content, str) else _join(reply.content)
        return self._finish(text, used, request)

    def stream(self, request: GenerationRequest) -> Iterator[str | Generation]:
        deadline = deadline_for(self.settings, request.deadline)
        if self.json_output:
            structured = self._structured(request, deadline)
            if structured is not None:  # JSON is not shown as it comes: the verified answer is
                yield structured
                return
        messages, used = self.messages(request)
        parts: list[str] = []
        attempt = 0
        while True:
            try:
                for chunk in self._within(deadline, lambda left: self.llm.stream(messages, timeout=left)):
                    piece = chunk.content if isinstance(chunk.content, str) else _join(chunk.content)
                    if piece:
                        parts.append(piece)
                        yield piece
                break
            except Exception as exc:  # noqa: BLE001
                if parts or not self._may_retry(exc, attempt, deadline):
                    raise self._error(exc) from None
                attempt += 1
        yield self._finish("".join(parts), used, request)

    # --- structured answers
    def _structured(self, request: GenerationRequest, deadline: float) -> Generation | None:
        """A JSON answer checked quote by quote; None when the server refuses `response_format`."""
        import openai

        messages, used = self.messages(request, structured=True)
        schema = {"type": "json_schema",
                  "json_schema": {"name": "cited_answer", "strict": True, "schema": answer_schema(used)}}
        body = {"model": self.model, "temperature": self.settings.llm_temperature, "response_format": schema,
                "messages": [{"role": "system", "content": messages[0].content},
                             {"role": "user", "content": messages[1].content}]}
        if self.settings.llm_seed is not None:
            body["seed"] = self.settings.llm_seed
        # no max_tokens: the schema bounds the answer, and JSON cut at a token limit would be invalid
        client = self.llm.root_client.chat.completions  # the plain client: the JSON is ours to parse
        try:
            reply = self._retrying(
                lambda: self._within(deadline, lambda left: [client.create(timeout=left, **body)]), deadline)[0]
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if not re.search(r"response_format|json|schema|grammar", str(exc), re.IGNORECASE):
                raise self._error(exc) from None  # refused for another reason (the prompt too long…)
            log.warning("%s refused response_format (HTTP %s): answering in text", self.base_url, exc.status_code)
            self.json_output = False
            return None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        try:
            choice = reply.choices[0]
            content, finish = choice.message.content or "", choice.finish_reason
        except (AttributeError, IndexError, TypeError) as exc:
            raise self._error(exc) from None
        shown = [p.text for p in request.passages[:used]]
        return structured_generation(content, shown, request.lang, self.base_url, cut=finish == "length")

    # --- time budget and retries
    def _within(self, deadline: float, start: Callable[[float], Iterable]) -> Iterator:
        """The items of `start(seconds_left)`, produced in a worker thread, until the deadline.

        Waiting on a queue rather than on the socket puts a hard bound on the call: a server that never
        answers, stalls mid-stream or drips forever cannot hold the question past its budget. The worker
        stops reading (and closes the response) as soon as it sees the deadline has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime()
        items: queue.Queue = queue.Queue()
        abandoned = threading.Event()

        def work() -> None:
            iterator = None
            try:
                iterator = iter(start(max(deadline - time.monotonic(), 0.05)))
                for item in iterator:
                    if abandoned.is_set() or time.monotonic() > deadline:
                        return
                    items.put(("item", item))
                items.put(("done", None))
            except BaseException as exc:  # noqa: BLE001 — handed to the waiting thread
                items.put(("error", exc))
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # noqa: BLE001
                        pass

        threading.Thread(target=work, name="llm-call", daemon=True).start()
        try:
            while True:
                try:
                    kind, value = items.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    raise OutOfTime() from None
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            abandoned.set()

    def _retrying(self, call: Callable[[], Iterable], deadline: float) -> list:
        attempt = 0
        while True:
            try:
                return list(call())
            except Exception as exc:  # noqa: BLE001
                if not self._may_retry(exc, attempt, deadline):
                    raise
                attempt += 1

    def _may_retry(self, exc: Exception, attempt: int, deadline: float) -> bool:
        """Sleep before a retry when one is allowed and the budget leaves room for it."""
        if attempt >= self.settings.llm_max_retries or not is_transient(exc):
            return False
        wait = min(RETRY_BASE * 2**attempt, RETRY_MAX)
        if deadline - time.monotonic() - wait <= 0.1:
            return False
        time.sleep(wait)
        return True

    def _finish(self, text: str, used: int, request: GenerationRequest) -> Generation:
        text = (text or "").strip()
        if not text:
            raise GenerationError(f"The language model at {self.base_url} returned an empty answer.")
        if is_decline(text):
            return Generation(text=DECLINE[request.lang], declined=True, used=used)
        text, dropped = drop_uncited(text)
        return Generation(text=text, declined=False, used=used, dropped=dropped)

    def _error(self, exc: Exception) -> GenerationError:
        return GenerationError(describe_error(exc, self.base_url, self.model, self.settings.llm_timeout))


def drop_uncited(text: str) -> tuple[str, list[str]]:
    """The model was told to end every sentence with its passage numbers: a statement without any is not
    shown (however many of its words the passages contain, nothing ties it to one), only listed.
    Framing lines ("Selon les sources :") stay; if nothing else does, the chain declines."""
    from assistant.citations import answer_sentences, claim_text, is_framing, parse_markers

    kept, dropped, pos = [], [], 0
    for s, e in answer_sentences(text):
        sentence = text[s:e]
        if parse_markers(sentence) or is_framing(sentence):
            kept.append(text[pos:s] + sentence)
        else:
            if re.search(r"[^\W\d_]", sentence):  # a list number alone ("2.") is not worth listing
                dropped.append(claim_text(sentence))
            kept.append(text[pos:s])
        pos = e
    kept.append(text[pos:])
    out = re.sub(r"\n{3,}", "\n\n", "".join(kept)).strip()
    return out, dropped


def structured_generation(content: str, passages: list[str], lang: str, base_url: str, cut: bool = False) -> Generation:
    """A JSON answer made into marked text: a sentence stays only if its quote is found, verbatim, in a
    passage it cites (`passages`: the texts of passages 1..n as shown to the model); the markers it keeps
    are those passages (and any number outside 1..n, which the chain then removes and counts).
    `in_sources: false`, or nothing left, is a decline; the sentences left out are listed in `dropped`."""
    from assistant.citations import find_verbatim, strip_markers

    try:
        data = json.loads(content)
        sentences = data["sentences"]
        in_sources = data["in_sources"]
        if not isinstance(sentences, list):
            raise TypeError("sentences")
    except (ValueError, KeyError, TypeError) as exc:
        why = "was cut at the token limit" if cut else "is not the JSON asked for"
        raise GenerationError(f"The language model at {base_url} returned an answer that {why}.") from exc
    used = len(passages)
    lines, dropped = [], []
    for item in sentences:
        if not isinstance(item, dict):
            continue
        text = " ".join(strip_markers(str(item.get("text", ""))).split())
        if not text:
            continue
        numbers = [n for n in item.get("passages") or [] if isinstance(n, int)]
        quote = str(item.get("quote", ""))
        holding = [n for n in numbers if 1 <= n <= used and find_verbatim(quote, passages[n - 1]) is not None]
        if not in_sources or not holding:
            dropped.append(text)
            continue
        invented = [n for n in numbers if not 1 <= n <= used]
        markers = "".join(f"[{n}]" for n in dict.fromkeys(holding + invented))
        body, end = (text[:-1], text[-1]) if text[-1] in ".!?" else (text, ".")
        lines.append(f"{body} {markers}{end}")
    # a "sentence" may hold several: the markers go at its end, so the ones before would be uncited
    text, uncited = drop_uncited(" ".join(lines))
    dropped += uncited
    if not text:
        return Generation(text=DECLINE[lang], declined=True, used=used, dropped=dropped)
    return Generation(text=text, declined=False, used=used, dropped=dropped)


def is_transient(exc: Exception) -> bool:
    import openai

    if isinstance(exc, OutOfTime) or _is_timeout(exc):
        return False  # the budget is spent: a retry could only run past it
    if isinstance(exc, openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def _is_timeout(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, (OutOfTime, openai.APITimeoutError, TimeoutError)) or any(
        "Timeout" in cls.__name__ for cls in type(exc).__mro__)


def describe_error(exc: Exception, base_url: str, model: str, timeout: float) -> str:
    """A readable, secret-free message for a failed call."""
    import openai

    where = f"The language model endpoint at {base_url}"
    if _is_timeout(exc):
        return (f"{where} did not answer within {timeout:g} s, the time allowed for one question "
                "(ASSISTANT_LLM_TIMEOUT, retries included). Check that the server is running and not overloaded "
                "(a model on CPU can need more time), then try again or raise ASSISTANT_LLM_TIMEOUT.")
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
