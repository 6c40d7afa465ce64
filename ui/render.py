"""Drawing an `Answer`: text with [n] markers, one source card per verified citation, declines,
conflicts, errors, and the retrieval details (passages, scores, stage timings)."""
from __future__ import annotations

import html
import re
from pathlib import Path

import streamlit as st

from assistant.models import Answer, Citation

CONTEXT_CHARS = 400  # document text shown around the passage in "read in context"
SNIPPET_CHARS = 220  # passage text shown around the quote on the card
_PARAGRAPH = re.compile(r"\n\s*\n")
_MARKER = re.compile(r"\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")


# --- text helpers (pure) --------------------------------------------------------------------------------
def md_text(text: str) -> str:
    """Answer text for st.markdown: `$` is not math; markers [n] are highlighted."""
    text = (text or "").replace("$", r"\$")
    return _MARKER.sub(lambda m: f":blue[**[{m.group(1)}]**]", text)


def _esc(text: str) -> str:
    """HTML-escaped text that markdown leaves alone (no blank line ends the HTML block, no math)."""
    text = html.escape(text).replace("$", "&#36;").replace("*", "&#42;").replace("_", "&#95;")
    text = _PARAGRAPH.sub("<br><br>", text)  # paragraphs stay apart; a lone line break is a space
    return text.replace("\n", " ")


def quote_offsets(citation: Citation) -> tuple[int, int] | None:
    """Where the cited span lies inside `citation.passage_text`, or None."""
    text, quote = citation.passage_text or "", citation.quote or ""
    if not text or not quote:
        return None
    start = citation.start - citation.passage_start
    if 0 <= start and text[start : start + len(quote)] == quote:
        return start, start + len(quote)
    found = text.find(quote)
    return (found, found + len(quote)) if found >= 0 else None


def highlighted(text: str, span: tuple[int, int] | None, window: int | None = None) -> str:
    """HTML of `text` with `span` in <mark>; with `window`, only that many characters around it."""
    if span is None:
        body = text if window is None or len(text) <= 2 * window else text[: 2 * window] + "…"
        return _esc(body)
    a, b = span
    lo, hi = 0, len(text)
    if window is not None:
        lo, hi = max(0, a - window), min(len(text), b + window)
    before = ("…" if lo > 0 else "") + _esc(text[lo:a])
    after = _esc(text[b:hi]) + ("…" if hi < len(text) else "")
    return f'{before}<mark class="cite">{_esc(text[a:b])}</mark>{after}'


def _passage_block(inner: str) -> None:
    st.markdown(f'<div class="passage">{inner}</div>', unsafe_allow_html=True)


# --- answer ------------------------------------------------------------------------------------------------
def render_answer(answer: Answer, document_text=None, key: str = "") -> None:
    """Everything shown under an assistant message. `document_text(source)` gives a file's full text."""
    if answer.error:
        st.error(answer.error, icon=":material/error:")
        return
    if answer.declined:
        st.info("**Not in the sources.** " + md_text(answer.text or "The documents do not answer this question."),
                icon=":material/search_off:")
        return
    st.markdown(md_text(answer.text))
    for conflict in answer.conflicts:
        render_conflict(conflict)
    citations = [c for c in answer.citations if c.supported]
    if citations:
        st.caption(f"Sources ({len(citations)})")
        for citation in citations:
            render_citation(citation, document_text, key=f"{key}-{citation.number}")
    dropped = len(answer.unsupported_sentences)
    if dropped:
        st.caption(f"{dropped} sentence(s) left out because the sources do not support them.")


def render_conflict(conflict) -> None:
    lines = [f"**The sources disagree** about {conflict.about}:"]
    for value in conflict.values:
        marker = f" [{value.citation}]" if value.citation else ""
        quote = value.quote if len(value.quote) <= 160 else value.quote[:159] + "…"
        quote = f" — “{quote}”" if quote else ""
        lines.append(f"- **{value.value}** according to `{value.source}`{marker}{quote}")
    st.warning("\n".join(lines).replace("$", r"\$"), icon=":material/compare_arrows:")


def render_citation(citation: Citation, document_text=None, key: str = "") -> None:
    with st.container(border=True):
        st.markdown(f":blue[**[{citation.number}]**] **{citation.title or citation.source}**")
        support = "verbatim quote" if citation.support >= 0.999 else f"support {citation.support:.2f}"
        st.caption(f":material/description: {citation.source} · {support}")
        span = quote_offsets(citation)
        if span is None and citation.quote:
            _passage_block(f'<mark class="cite">{_esc(citation.quote)}</mark>')
        else:
            _passage_block(highlighted(citation.passage_text, span, window=SNIPPET_CHARS))
        with st.expander("Read in context"):
            render_context(citation, span, document_text)


def render_context(citation: Citation, span: tuple[int, int] | None, document_text=None) -> None:
    """The whole passage, with some of the document's text before and after it."""
    full = None
    if document_text is not None:
        try:
            full = document_text(citation.source)
        except Exception:  # a missing or unreadable file only loses the wider context
            full = None
    p0, p1 = citation.passage_start, citation.passage_end
    if full and 0 <= p0 < p1 <= len(full) and full[p0:p1] == citation.passage_text:
        lo, hi = max(0, p0 - CONTEXT_CHARS), min(len(full), p1 + CONTEXT_CHARS)
        before = ("…" if lo else "") + _esc(full[lo:p0])
        after = _esc(full[p1:hi]) + ("…" if hi < len(full) else "")
        inner = f'<span class="dim">{before}</span>{highlighted(citation.passage_text, span)}<span class="dim">{after}</span>'
        st.caption(f"Characters {p0}–{p1} of {citation.source}; the cited span is highlighted.")
    else:
        inner = highlighted(citation.passage_text or citation.quote, span)
    _passage_block(inner)


# --- retrieval details -------------------------------------------------------------------------------------
def _num(value, fmt: str = "{:.3f}") -> str:
    return "–" if value is None else fmt.format(value)


def render_details(answer: Answer, key: str = "") -> None:
    """What was retrieved (ranks and scores) and how long each stage took."""
    who = answer.generator + (f" · {answer.model}" if answer.model else "")
    if who:
        st.caption(f"Generator: {who} · kb {answer.kb or '–'}")
    if answer.standalone_question and answer.standalone_question != answer.question:
        st.caption(f"Searched as: “{answer.standalone_question}”")
    if answer.timings:
        total = answer.timings.get("total")
        stages = " · ".join(f"{k} {v:.0f} ms" for k, v in answer.timings.items() if k != "total")
        st.markdown(f"**Timings** {stages}" + (f" · **total {total:.0f} ms**" if total is not None else ""))
    if not answer.passages:
        st.caption("No passage retrieved.")
        return
    cited = {(c.source, c.chunk_id) for c in answer.citations if c.supported}
    rows = [
        {"#": p.rank, "cited": "✓" if (p.source, p.chunk_id) in cited else "", "fused": p.score,
         "dense": p.dense_score, "BM25": p.lexical_score, "passage": f"{Path(p.source).stem} §{p.index}",
         "text": " ".join(p.text.split())}
        for p in answer.passages
    ]
    st.caption(f"{len(rows)} passages retrieved. fused = reciprocal rank fusion, dense = cosine similarity, "
               "BM25 = lexical score.")
    import pandas as pd  # here, not at the top: it would cost the chat page ~0.3 s before its input shows

    st.dataframe(
        pd.DataFrame(rows), hide_index=True, width="stretch", placeholder="–",
        column_order=["#", "cited", "fused", "dense", "BM25", "passage"],
        column_config={
            "#": st.column_config.NumberColumn("#", width=24),
            "cited": st.column_config.TextColumn("✓", width=24, help="cited in the answer"),
            "fused": st.column_config.NumberColumn("fused", format="%.4f", width=56),
            "dense": st.column_config.NumberColumn("dense", format="%.3f", width=48),
            "BM25": st.column_config.NumberColumn("BM25", format="%.2f", width=44),
            "passage": st.column_config.TextColumn("passage", help="source file and chunk number"),
        },
    )
    with st.popover("Passage texts", width="stretch", key=f"texts-{key}"):
        for row in rows:
            st.markdown(f"**{row['#']}.** `{row['passage']}`")
            st.caption(row["text"][:400] + ("…" if len(row["text"]) > 400 else ""))


def file_text_reader(settings):
    """`source -> full text` for the settings' knowledge base (cached by path and modification time)."""
    from assistant.indexing import document_file

    def read(source: str) -> str | None:
        found = document_file(settings, settings.kb, source)  # knowledge/ or the uploads folder, never a link
        if found is None:
            return None
        return _load_text(str(found[0]), str(found[1]), found[0].stat().st_mtime_ns)

    return read


@st.cache_data(max_entries=64, show_spinner=False)
def _load_text(path: str, root: str, mtime_ns: int) -> str | None:
    from assistant import documents

    try:
        return documents.load(Path(path), root=Path(root)).text
    except (documents.UnsupportedDocument, OSError):
        return None
