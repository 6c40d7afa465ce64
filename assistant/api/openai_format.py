"""The OpenAI chat-completions shapes: requests into (question, history), `Answer`s into responses and
Server-Sent-Events chunks. Pure functions, no I/O.

The answer text keeps its markers [1]…; the verified citations, `declined`, `conflicts` and the timings
ride along in the extra field `grounding` (of the response, and of the final stream chunk). A client
that ignores extra fields still gets the sources as a short Markdown list after a rule at the end of
the text; that list is cut off again when the text comes back as history.

Document text is data: what a front end would render as an image, a link or HTML (`![`, `](`, `]:`,
`<`) is backslash-escaped in the content, so a Markdown front end shows it as the characters it is.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from assistant.generation.prompts import approx_tokens
from assistant.models import Answer, Turn

SOURCES_RULE = "\n\n---\n**Sources**\n"
TITLE_CHARS = 120
CHUNK_WORDS = 6  # words per streamed chunk
_ACTIVE = re.compile(r"!\[|\]\(|\]:|<")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields we read; any other OpenAI parameter (temperature, max_tokens…) is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="the knowledge base to answer from (GET /v1/models lists them)")
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation; the last user message is the question")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    sources_in_text: bool = Field(True, description="append the sources as a Markdown list to the text")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str
    kb: str | None = Field(None, description="knowledge base (default: the server's ASSISTANT_KB)")
    k: int | None = Field(None, ge=1, le=50, description="passages to return (default: top_k)")


def inert(text: str) -> str:
    """Markdown that shows document characters as characters: no image, link or HTML."""
    return _ACTIVE.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1], text or "")


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    """A message's text (a list of content parts: its text parts, joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")


def conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """(question, history): the last message must be the user's; earlier user messages, each with the
    assistant reply that followed it, are the history. System and tool messages are ignored: the
    assistant's rules are its own."""
    talk = [m for m in messages if m.role in ("user", "assistant")]
    if not talk or talk[-1].role != "user":
        raise ValueError("the last message must be a user message (the question)")
    history: list[Turn] = []
    for m in talk[:-1]:
        if m.role == "user":
            history.append(Turn(question=text_of(m.content)))
        elif history and not history[-1].answer:
            history[-1] = Turn(question=history[-1].question, answer=strip_sources(text_of(m.content)))
    return text_of(talk[-1].content), history


def strip_sources(text: str) -> str:
    return text.split(SOURCES_RULE, 1)[0]


def _short(text: str, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def content(answer: Answer, sources_in_text: bool = True) -> str:
    """The message text: the answer (markers [n] kept), then the numbered sources."""
    text = inert(answer.text)
    cited = [c for c in answer.citations if c.supported]
    if sources_in_text and cited:
        lines = [f"- [{c.number}] {inert(_short(c.title, TITLE_CHARS))} ({inert(c.source)})" for c in cited]
        text += SOURCES_RULE + "\n".join(lines)
    return text


def grounding(answer: Answer) -> dict[str, Any]:
    """The extra field: everything a client needs to show the answer's evidence itself."""
    return {
        "text": answer.text,
        "citations": [c.model_dump() for c in answer.citations],
        "declined": answer.declined,
        "conflicts": [c.model_dump() for c in answer.conflicts],
        "timings": answer.timings,
        "standalone_question": answer.standalone_question,
        "unsupported_sentences": answer.unsupported_sentences,
        "removed_markers": answer.removed_markers,
        "generator": answer.generator,
        "generator_model": answer.model,
        "kb": answer.kb,
    }


def usage(question: str, history: list[Turn], text: str) -> dict[str, int]:
    """Approximate token counts (no tokenizer): what clients that print usage expect to find."""
    prompt = approx_tokens(question + "".join(t.question + t.answer for t in history))
    completion = approx_tokens(text)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def completion(answer: Answer, kb: str, question: str, history: list[Turn], sources_in_text: bool = True) -> dict:
    text = content(answer, sources_in_text)
    return {
        "id": new_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": kb,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": usage(question, history, text),
        "grounding": grounding(answer),
    }


def pieces(text: str, words: int = CHUNK_WORDS) -> list[str]:
    """The text cut into chunks of a few words; joined, they give the text back exactly."""
    parts = re.findall(r"\S+\s*|\s+", text)
    return ["".join(parts[i : i + words]) for i in range(0, len(parts), words)]


def stream_events(answer: Answer, kb: str, question: str, history: list[Turn], sources_in_text: bool = True,
                  include_usage: bool = False) -> Iterator[str]:
    """SSE events of a verified answer: a role chunk, the text in chunks, a final chunk with
    finish_reason and `grounding`, optionally a usage chunk, then [DONE]."""
    cid, created = new_id(), int(time.time())
    text = content(answer, sources_in_text)

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": kb,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for piece in pieces(text):
        yield chunk({"content": piece})
    yield chunk({}, "stop", grounding=grounding(answer))
    if include_usage:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": kb, "choices": [],
                "usage": usage(question, history, text)}
        yield "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"
    yield "data: [DONE]\n\n"


def error_body(message: str, type_: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
