"""Streamlit entry point: `streamlit run ui/app.py` (what `make run` does).

Three pages (Chat, Library, Evals) under st.navigation, and a sidebar shared by all of them: the
knowledge base of this session and the generator in force. Any unexpected error is shown as a short
message, never as a stack trace.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # fallback when the package is not installed in the interpreter
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from ui import render, state  # noqa: E402

log = logging.getLogger("ui")
PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="Summit assistant", page_icon=":material/forum:", layout="wide")
st.markdown(
    """<style>
    mark.cite {background: #fde68a; padding: 0 .15em; border-radius: .2em;}
    div.answer {line-height: 1.6; margin-bottom: .5rem;}
    span.cite-marker {color: #1d4ed8; font-weight: 600; white-space: nowrap;}
    a.cite-ref {color: #1d4ed8; text-decoration: none; font-weight: 700;}
    a.cite-ref:hover {text-decoration: underline;}
    span.cite-num {color: #1d4ed8; font-weight: 700;}
    div.meta {font-size: .85rem; opacity: .65; margin: .1rem 0;}
    div.conflict {background: rgba(250, 202, 21, .16); border-radius: .5rem; padding: .75rem 1rem; margin: .4rem 0;}
    div.conflict ul {margin: .3rem 0 0 0;}
    div.passage {font-size: .92rem; line-height: 1.5; color: inherit; border-left: 3px solid #cbd5e1;
                 padding: .2rem .8rem; margin: .2rem 0 .4rem 0;}
    div.passage .dim {opacity: .6;}
    </style>""",
    unsafe_allow_html=True,
)


def sidebar(settings) -> None:
    """Knowledge-base selector and what answers the questions."""
    from assistant.store import list_kbs

    with st.sidebar:
        try:
            kbs = list_kbs(settings)
            st.session_state[state.KBS_KEY] = kbs
        except Exception as exc:  # Chroma server down, unwritable data dir…
            kbs = []
            st.session_state[state.KBS_KEY] = None
            st.error(f"Vector store unavailable — {render.alert_text(state.short_error(exc, 600))}")
        options = sorted(set(kbs) | {settings.kb})
        # The session's knowledge base lives in session_state[KB_KEY], not in the widget: the selector is
        # drawn with that choice as its index and no key, so a value the browser holds for a selector drawn
        # before (or its default, the first name) can never replace the configured knowledge base.
        chosen = st.selectbox("Knowledge base", options, index=options.index(settings.kb),
                              help="Each knowledge base is its own collection of documents (create one on the "
                                   "Library page)")
        if chosen != settings.kb:
            state.switch_kb(chosen)
            st.rerun()
        if settings.resolved_generator == "openai":
            where = settings.openai_base_url or "api.openai.com"
            st.markdown(f"**Generator** `openai` · model `{settings.llm_model}`")
            if settings.local_model:  # ASSISTANT_LOCAL_MODEL: our own llama.cpp server on loopback
                where = f"local llama.cpp server, {where}"
            st.caption(f"LLM configured ({where})" if settings.llm_configured else "No LLM key or endpoint set")
        else:
            st.markdown("**Generator** `extractive` (offline)")
            st.caption("No LLM configured: answers quote the sources verbatim. "
                       "Set OPENAI_API_KEY or OPENAI_BASE_URL to use a model.")


try:
    settings = state.session_settings()
    if settings.local_model and not settings.openai_base_url:  # start it (once a process), or say why not
        from assistant.llm_server import ensure_local_server

        settings = ensure_local_server(settings)
except Exception as exc:
    st.error(f"The assistant cannot start: {render.alert_text(state.short_error(exc))}")
    st.stop()

sidebar(settings)
page = st.navigation(
    [
        st.Page(PAGES / "chat.py", title="Chat", icon=":material/chat:", default=True),
        st.Page(PAGES / "library.py", title="Library", icon=":material/library_books:"),
        st.Page(PAGES / "evals.py", title="Evals", icon=":material/analytics:"),
    ]
)
try:
    page.run()
except Exception as exc:  # the pages handle expected errors; this is the last net (reruns are BaseExceptions)
    log.exception("page %s failed", page.title)
    st.error(f"Something went wrong: {render.alert_text(state.short_error(exc))}")
