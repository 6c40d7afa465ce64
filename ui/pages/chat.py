"""Chat: questions about the documents, answers streamed, cited sentence by sentence."""
from __future__ import annotations

from typing import Iterator

import streamlit as st

from assistant.models import Answer, Turn
from ui import render, state

EXAMPLES = [
    "Combien de pays ont signé la déclaration ?",
    "Quels pays ont refusé de signer la déclaration ?",
    "Que reproche J.D. Vance à la réglementation européenne ?",
]

INPUT_KEY = "question_box"
TOO_LONG = "question_too_long"  # a refused question, put back in the box on the next run

settings = state.session_settings()
chat = state.history()
reader = render.file_text_reader(settings)

st.title("Chat")
st.caption(f"Answers come only from the documents of the knowledge base **{render.alert_text(settings.kb)}**; "
           "every sentence cites its source.")

notices = st.container()
# the input is drawn before the assistant is loaded (the first load imports the chain: ~1 s), so that
# on a cold start the page is usable at once and the load overlaps with the user's typing
# no max_chars: the browser would cut or drop a pasted question without a word. A question over the limit is
# refused here with the limit shown, and put back in the box to be shortened (nothing typed is lost).
limit = settings.max_question_chars
if TOO_LONG in st.session_state:
    st.session_state[INPUT_KEY] = st.session_state[TOO_LONG]  # pre-fills the box (read once by the widget)
question = st.chat_input(f"Ask a question about the documents… (up to {limit:,} characters)", key=INPUT_KEY)
question = question if question is not None else st.session_state.pop("pending_question", None)
if question is not None and len(question.strip()) > limit:
    st.session_state[TOO_LONG] = question
    st.rerun()
too_long = st.session_state.pop(TOO_LONG, None)

try:
    assistant, load_error = state.get_assistant(settings), None
except Exception as exc:  # the chain builds lazily, but a set-up failure must still read well
    assistant, load_error = None, state.short_error(exc)
with notices:
    if load_error:
        st.error(f"The assistant is not available: {render.alert_text(load_error)}", icon=":material/error:")
    known = st.session_state.get(state.KBS_KEY)
    if known is not None and settings.kb not in known:
        st.info(f"Knowledge base **{render.alert_text(settings.kb)}** has no documents yet.", icon=":material/info:")
        st.page_link("pages/library.py", label="Add documents on the Library page", icon=":material/library_books:")


def _stream_into(slot, stream: Iterator, holder: dict) -> None:
    """Draw the str chunks of `Assistant.stream` as plain text as they come; keep the final Answer aside."""
    shown = ""
    for item in stream:
        if isinstance(item, Answer):
            holder["answer"] = item
        elif item:
            shown += str(item)
            slot.markdown(render.block(render.plain(shown), "answer"), unsafe_allow_html=True)


def ask(question: str) -> dict:
    """Ask with the history, streaming into the assistant bubble; returns the history entry."""
    turns = [Turn(question=e["question"], answer=e["answer"].text)
             for e in chat if e.get("answer") is not None and not e["answer"].error]
    holder: dict = {}
    slot = st.empty()
    try:
        if hasattr(assistant, "stream"):
            with slot.container():
                with st.spinner("Searching the documents…"):
                    stream = iter(assistant.stream(question, turns))
                    first = next(stream, None)  # retrieval happens before the first chunk
                _stream_into(st.empty(), _chain([first], stream), holder)
        else:
            holder["answer"] = assistant.ask(question, turns)
    except Exception as exc:  # the chain should not raise; if it does, the user reads one line
        return {"question": question, "answer": None, "error": f"The question could not be answered: {state.short_error(exc)}"}
    finally:
        slot.empty()
    answer = holder.get("answer")
    if answer is None:
        return {"question": question, "answer": None, "error": "The assistant returned no answer."}
    return {"question": question, "answer": answer, "error": None}


def _chain(head: list, tail: Iterator) -> Iterator:
    for item in head:
        if item is not None:
            yield item
    yield from tail


def show_entry(i: int, entry: dict) -> None:
    with st.chat_message("user"):
        render.show(render.plain(entry["question"]), "question")
    with st.chat_message("assistant"):
        if entry.get("error"):
            st.error(render.alert_text(entry["error"]), icon=":material/error:")
        else:
            render.render_answer(entry["answer"], reader, key=f"a{i}")


if not chat and question is None and not load_error and too_long is None:
    with st.chat_message("assistant"):
        st.markdown("Ask me about the documents, in French or English. For example:")
        for example in EXAMPLES:
            st.button(example, key=f"example-{example}", icon=":material/help:",
                      on_click=st.session_state.__setitem__, args=("pending_question", example))

for i, entry in enumerate(chat):
    show_entry(i, entry)

if too_long is not None:
    with st.chat_message("assistant"):
        st.warning(f"Your question is {len(too_long.strip()):,} characters long; the limit is {limit:,} "
                   "(ASSISTANT\\_MAX\\_QUESTION\\_CHARS). It is back in the box below: shorten it and send it again.",
                   icon=":material/edit_note:")

if question is not None:
    if not question.strip():
        with st.chat_message("assistant"):
            st.warning("Please type a question: the message was empty.", icon=":material/edit_note:")
    elif assistant is None:
        entry = {"question": question, "answer": None, "error": f"The assistant is not available: {load_error}"}
        chat.append(entry)
        show_entry(len(chat) - 1, entry)
    else:
        with st.chat_message("user"):
            render.show(render.plain(question), "question")
        with st.chat_message("assistant"):
            entry = ask(question)
            if entry["error"]:
                st.error(render.alert_text(entry["error"]), icon=":material/error:")
            else:
                render.render_answer(entry["answer"], reader, key=f"a{len(chat)}")
        chat.append(entry)

# --- sidebar: top-k, new conversation, what each answer retrieved ---------------------------------------------
with st.sidebar:
    st.divider()
    k = state.retrieved_k(settings)
    st.slider("Passages retrieved (top-k)", 1, max(20, k), value=k, key="_top_k",
              help="How many passages each question retrieves and hands to the generator",
              on_change=lambda: st.session_state.__setitem__("top_k", st.session_state["_top_k"]))
    st.button("New conversation", icon=":material/add_comment:", on_click=state.new_conversation,
              disabled=not chat, width="stretch")
    answered = [(i, e) for i, e in enumerate(chat, start=1) if e.get("answer") is not None]
    if answered:
        st.markdown("**Retrieval details**")
    for i, entry in reversed(answered):
        with st.expander(f"#{i} · {render.label_text(entry['question'])}", expanded=i == len(chat)):
            render.render_details(entry["answer"], key=str(i))

# last, once the page is drawn: load the index and the embedding model while the user types, so that
# the first answer of a fresh server does not wait for them
if assistant is not None and question is None:
    assistant.warm_up()
