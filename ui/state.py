"""Per-session state and the shared, cached objects of the Streamlit app.

Settings come from the environment (and assistant.toml) on every run; the session only overrides the
knowledge base and top-k. Chat history lives in `st.session_state`, so two browser tabs never share it.
`Assistant` objects are cached across sessions, keyed on the settings, the knowledge base and a stamp of
its index, and the cache is cleared after every library change: a deleted document cannot linger in
answers through a stale retriever.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any

import streamlit as st

from assistant.config import Settings

log = logging.getLogger(__name__)

KB_KEY = "kb"  # the session's knowledge base (a plain value: the sidebar selector has no key)
KB_NEXT = "kb_next"  # set by the selector and by pages that switch knowledge base; applied on the next run
KBS_KEY = "_kbs"  # the knowledge bases listed by the sidebar on this run (None: the store is unreachable)
CHAT_KEY = "chat"  # list of {"question": str, "answer": Answer | None, "error": str | None}


class SettingsError(RuntimeError):
    """The environment or assistant.toml holds a value the settings refuse."""


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One readable line for the user: the message, never a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def base_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic ValidationError on a bad env value or toml file
        raise SettingsError(f"invalid configuration: {short_error(exc)}") from exc


def current_kb(default: str) -> str:
    if KB_NEXT in st.session_state:
        st.session_state[KB_KEY] = st.session_state.pop(KB_NEXT)
    if not st.session_state.get(KB_KEY):
        st.session_state[KB_KEY] = default
    return st.session_state[KB_KEY]


def switch_kb(kb: str) -> None:
    """Ask the next run to use `kb` (the settings of this run are already made)."""
    st.session_state[KB_NEXT] = kb


def session_settings() -> Settings:
    """The settings in force for this browser session: environment + the session's kb and top-k."""
    settings = base_settings()
    update: dict[str, Any] = {"kb": current_kb(settings.kb)}
    if "top_k" in st.session_state:  # the slider: passages retrieved, and handed to the generator
        update["top_k"] = int(st.session_state["top_k"])
        if "answer_passages" in type(settings).model_fields:
            update["answer_passages"] = update["top_k"]
    return settings.model_copy(update=update)


def retrieved_k(settings: Settings) -> int:
    """How many passages a question retrieves (the chain reads at least `answer_passages`)."""
    return max(settings.top_k, getattr(settings, "answer_passages", 0) or 0)


def history() -> list[dict]:
    return st.session_state.setdefault(CHAT_KEY, [])


def new_conversation() -> None:
    st.session_state[CHAT_KEY] = []


# --- the cached assistant -------------------------------------------------------------------------
def index_stamp(settings: Settings, kb: str) -> str:
    """Changes whenever the knowledge base's index was rewritten (here, by the CLI, or by another tab)."""
    from assistant.indexing import index_version

    return index_version(settings, kb)


def settings_key(settings: Settings) -> str:
    """A hash of every setting, secrets included (so a new API key gets a new assistant)."""
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
    raw = repr(sorted((k, str(v)) for k, v in values.items())) + key
    return hashlib.sha256(raw.encode()).hexdigest()


@st.cache_resource(max_entries=8, show_spinner="Loading the assistant…")
def _cached_assistant(key: str, _settings: Settings, kb: str):
    from assistant.chain import Assistant

    return Assistant(_settings, kb=kb)


def get_assistant(settings: Settings):
    """The assistant for these settings; raises with a readable message when it cannot be built."""
    key = f"{settings_key(settings)}:{settings.kb}:{index_stamp(settings, settings.kb)}"
    return _cached_assistant(key, settings, settings.kb)


def library_changed() -> None:
    """Forget every cached assistant: the next question opens the index afresh."""
    _cached_assistant.clear()
