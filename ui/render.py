"""Drawing an `Answer`: text with [n] markers, one source card per verified citation, declines,
conflicts, errors, and the retrieval details (passages, scores, stage timings)."""
from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from assistant.citations import document_brackets
from assistant.models import Answer, Citation

CONTEXT_CHARS = 400  # document text shown around the passage in "read in context"
SNIPPET_CHARS = 220  # passage text shown around the quote on the card
_PARAGRAPH = re.compile(r"\n\s*\n")
_MARKER = re.compile(r"\[(\d+(?:\s*[,;–-]\s*\d+)*)\]")


# --- text helpers (pure) --------------------------------------------------------------------------------
# Every piece of text that comes from a document or a model is drawn through `plain()`, inside an HTML block of
# st.markdown: Markdown is not parsed inside an HTML block, and each ASCII punctuation character becomes a
# character reference, so nothing of it can become an image, a link, HTML, emphasis, math, an emoji shortcode
# (`:warning:`), a Material icon (`:material/…:`, which Streamlit rewrites in the raw source) or a typographic
# replacement (`->`, `--`). Streamlit's other Markdown surfaces (alerts, captions, labels) autolink URLs and
# replace arrows even in escaped text, so document text never goes there.
_PUNCT = re.compile(r"[!-/:-@\[-`{-~]")  # every ASCII punctuation character


def plain(text: str | None, newlines: str = "br") -> str:
    """`text` as HTML that shows exactly its characters and nothing else.

    newlines="br": each line break is kept; "flow": a blank line separates paragraphs, a lone line break is a
    space (hard-wrapped document text); "space": everything on one line. Never a blank line in the output (it
    would end the HTML block)."""
    out = _PUNCT.sub(lambda m: f"&#{ord(m.group())};", (text or "").replace("\r\n", "\n").replace("\r", "\n"))
    if newlines == "flow":
        out = _PARAGRAPH.sub("<br><br>", out)
    out = out.replace("\n", "<br>" if newlines == "br" else " ")
    return out


def block(inner: str, cls: str = "plain", anchor: str | None = None) -> str:
    """An HTML block for st.markdown(..., unsafe_allow_html=True): one line, so Markdown leaves it alone."""
    ident = f' id="{anchor}"' if anchor else ""
    return f'<div class="{cls}"{ident}>{inner}</div>'


def show(inner: str, cls: str = "plain", anchor: str | None = None) -> None:
    st.markdown(block(inner, cls, anchor), unsafe_allow_html=True)


def label_text(text: str | None, limit: int = 40) -> str:
    """Text for a widget label (Markdown that Streamlit renders without HTML): letters, digits, spaces and a
    few marks that no Markdown, link, shortcode or replacement is made of."""
    kept = "".join(c if (c.isalnum() or c in " ?!,;'’«»") else " " for c in " ".join((text or "").split()))
    kept = " ".join(kept.split())
    return kept if len(kept) <= limit else kept[: limit - 1] + "…"


def alert_text(text: str | None) -> str:
    """One of our own messages that carries outside text (an error from a server, a file name) for an alert
    (st.error, st.warning): Markdown punctuation backslash-escaped, so it shows no image, link text, HTML,
    emphasis or shortcode. Alerts still autolink bare URLs: document or model text never goes there."""
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join((text or "").split()))


def anchor_id(key: str, number: int) -> str:
    return f"cite-{re.sub(r'[^A-Za-z0-9-]', '-', key)}-{number}"


def _quote_spans(text: str, quotes) -> list[tuple[int, int]]:
    """Where the cited quotes appear in the answer text (whitespace may differ): markers inside a quote are
    the document's own characters, never citations."""
    spans = []
    for quote in quotes:
        words = (quote or "").split()
        if not words:
            continue
        for m in re.finditer(r"\s+".join(map(re.escape, words)), text):
            spans.append(m.span())
    return spans


def answer_html(text: str | None, citations=(), key: str = "") -> str:
    """Answer text as plain text, except the assistant's own markers [n] of the given citations, which become
    links to their source cards. A marker inside a quoted span, or whose number has no card, stays text."""
    text = text or ""
    numbers = {c.number for c in citations}
    quoted = _quote_spans(text, [c.quote for c in citations])
    out, at = [], 0
    for m in _MARKER.finditer(text):
        group = [int(n) for n in re.findall(r"\d+", m.group(1))]
        inside = any(a <= m.start() and m.end() <= b for a, b in quoted)
        if inside or not group or not set(group) <= numbers:
            continue
        out.append(plain(document_brackets(text[at : m.start()])))
        linked = re.sub(r"\d+", lambda d: f'<a class="cite-ref" href="#{anchor_id(key, int(d.group()))}">{d.group()}</a>',
                        plain(m.group(1)))
        out.append(f'<span class="cite-marker">&#91;{linked}&#93;</span>')
        at = m.end()
    out.append(plain(document_brackets(text[at:])))  # a document's own "［1］" shown as its "[1]", plain text
    return "".join(out)


def _esc(text: str) -> str:
    """Document text inside a passage block (paragraphs kept apart, lone line breaks as spaces)."""
    return plain(text, newlines="flow")


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
    show(inner, "passage")


def _caption(inner: str) -> None:
    show(inner, "meta")


# --- answer ------------------------------------------------------------------------------------------------
def render_answer(answer: Answer, document_text=None, key: str = "") -> None:
    """Everything shown under an assistant message. `document_text(source)` gives a file's full text."""
    if answer.error:
        st.error(alert_text(answer.error), icon=":material/error:")
        return
    if answer.declined:
        st.info("**Not in the sources.**", icon=":material/search_off:")
        show(plain(answer.text or "The documents do not answer this question."), "answer")
        return
    citations = [c for c in answer.citations if c.supported]
    show(answer_html(answer.text, citations, key), "answer")
    for conflict in answer.conflicts:
        render_conflict(conflict, {c.number for c in citations}, key)
    if citations:
        st.caption(f"Sources ({len(citations)})")
        for citation in citations:
            render_citation(citation, document_text, key=key)
    dropped = len(answer.unsupported_sentences)
    if dropped:
        st.caption(f"{dropped} sentence(s) left out because the sources do not support them.")


def conflict_html(conflict, numbers=(), key: str = "") -> str:
    items = []
    for value in conflict.values:
        marker = ""
        if value.citation is not None:
            number = plain(str(value.citation))
            marker = (f' <span class="cite-marker">&#91;<a class="cite-ref" href="#{anchor_id(key, value.citation)}">'
                      f'{number}</a>&#93;</span>' if value.citation in numbers else f" &#91;{number}&#93;")
        quote = value.quote if len(value.quote) <= 160 else value.quote[:159] + "…"
        quote = f" — “{plain(quote, 'space')}”" if quote else ""
        items.append(f"<li><b>{plain(value.value, 'space')}</b> according to <code>{plain(value.source, 'space')}</code>"
                     f"{marker}{quote}</li>")
    return (f"<b>The sources disagree</b> about {plain(conflict.about, 'space')}:"
            f"<ul>{''.join(items)}</ul>")


def render_conflict(conflict, numbers=(), key: str = "") -> None:
    show(conflict_html(conflict, numbers, key), "conflict")


def render_citation(citation: Citation, document_text=None, key: str = "") -> None:
    with st.container(border=True):
        title = plain(citation.title or citation.source, "space")
        show(f'<span class="cite-num">&#91;{citation.number}&#93;</span> <b>{title}</b>', "card-title",
             anchor=anchor_id(key, citation.number))
        support = "verbatim quote" if citation.support >= 0.999 else f"support {citation.support:.2f}"
        _caption(f"{plain(citation.source, 'space')} · {support}")
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
        _caption(f"Characters {p0}–{p1} of {plain(citation.source, 'space')}; the cited span is highlighted.")
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
        _caption(f"Generator: {plain(who, 'space')} · kb {plain(answer.kb or '–', 'space')}")
    if answer.standalone_question and answer.standalone_question != answer.question:
        _caption(f"Searched as: “{plain(answer.standalone_question, 'space')}”")
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
            show(f"<b>{row['#']}.</b> <code>{plain(row['passage'], 'space')}</code>")
            _caption(plain(row["text"][:400] + ("…" if len(row["text"]) > 400 else ""), "space"))


def file_text_reader(settings):
    """`source -> full text` for the settings' knowledge base (cached by path and modification time)."""
    from assistant.folders import document_file

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
