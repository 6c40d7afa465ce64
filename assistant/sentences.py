"""Sentence spans of messy news text, with exact offsets.

The default articles are machine-translated and scraped: quotations sit on their own lines
(`à la\\n"politisation"\\ndes questions…`), sentences are glued (`…de l'IALes membres…`,
`…Xi JinpingIl a souligné…`). Lines that are fragments are joined to their neighbours, glued sentence
starts are split, and every span keeps its offsets in the original text.
"""
from __future__ import annotations

import re
from typing import NamedTuple


class Span(NamedTuple):
    start: int
    end: int

_TERMINAL = re.compile(r"""[.!?…]["'»”’)\]]*$""")
_FUNCTION_END = re.compile(
    r"(?:\b(?:à|a|la|le|les|de|des|du|d'une|d'un|un|une|avec|par|pour|en|et|ou|que|qui|dont|sur|dans|aux|au"
    r"|of|the|an|and|or|to|with|for|in|by|on|that|from)|[,;:(«“-])$",
    re.IGNORECASE,
)
_CONTINUATION_START = re.compile(r"""^(?:[,.;:)\]»”’…]|["'“«]?\s*[a-zà-ÿ])""")
_BOUNDARY = re.compile(r"""[.!?…]+["'»”’)\]]*\s+(?=["'“«(\-–—]?\s*[A-ZÀ-ÖØ-Þ0-9])""")
_GLUED = re.compile(
    r"""(?:(?<=[^\W_])|(?<=[^\W_]["”»]))(?=(?:Les|Le|La|Il|Ils|Elle|Elles|Un|Une|Des|Ce|Cette|Cependant|Mais|Selon|Pour|Nous|On"
    r"|The|It|He|She|They|This|However|In)\b(?![-'’]))"""
)
_ABBREVIATION = re.compile(
    r"(?:\b[A-Z]|\b(?:[A-Z]\.)+[A-Z]|\b(?:M|Mme|Mlle|Mr|Mrs|Ms|Dr|Pr|St|Me|Mgr|etc|vs|cf|av|apr|n°|No|Jr|Sr))[.]$"
)


def _lines(text: str) -> list[tuple[int, int]]:
    """Trimmed non-empty lines; an empty line is kept as (-1, -1) to mark a paragraph break."""
    out: list[tuple[int, int]] = []
    pos = 0
    for raw in text.split("\n"):
        stripped = raw.strip()
        if stripped:
            s = pos + raw.index(stripped[0])
            out.append((s, s + len(stripped)))
        else:
            out.append((-1, -1))
        pos += len(raw) + 1
    return out


def _blocks(text: str) -> list[tuple[int, int]]:
    """Lines joined into blocks: a line continues the previous one when either is visibly a fragment."""
    blocks: list[list[int]] = []
    previous: tuple[int, int] | None = None
    for start, end in _lines(text):
        if start < 0:
            previous = None
            continue
        line = text[start:end]
        join = False
        if previous is not None and blocks:
            prev = text[previous[0] : previous[1]]
            if line.startswith("#") or prev.startswith("#"):
                join = False
            elif _CONTINUATION_START.match(line):
                join = True
            elif not _TERMINAL.search(prev) and _FUNCTION_END.search(prev):
                join = True
            elif not _TERMINAL.search(prev) and prev[:1] in "\"“«" and not prev.rstrip("\"”»").endswith(":"):
                join = True  # a quotation on its own line, then the words that introduce or attribute it
        if join:
            blocks[-1][1] = end
        else:
            blocks.append([start, end])
        previous = (start, end)
    return [(s, e) for s, e in blocks]


def sentence_spans(text: str) -> list[Span]:
    """(start, end) of each sentence of `text`, trimmed, in order — the one sentence splitter, used by
    chunking, the extractive generator and citation checks alike."""
    spans: list[Span] = []
    for bstart, bend in _blocks(text):
        cuts = [bstart]
        for m in _BOUNDARY.finditer(text, bstart, bend):
            head = text[max(bstart, m.start() - 12) : m.start() + 1]
            if text[m.start()] == "." and _ABBREVIATION.search(head):
                continue
            cuts.append(m.end())
        for m in _GLUED.finditer(text, bstart, bend):
            cuts.append(m.start())
        cuts = sorted(set(cuts)) + [bend]
        for s, e in zip(cuts, cuts[1:]):
            piece = text[s:e]
            stripped = piece.strip()
            if stripped:
                s2 = s + piece.index(stripped[0])
                spans.append(Span(s2, s2 + len(stripped)))
    return spans


def clean(sentence: str) -> str:
    """One-line display form: whitespace collapsed, no space before a comma or a period."""
    out = re.sub(r"\s+", " ", sentence).strip()
    return re.sub(r" ([,.])(?=\s|$)", r"\1", out)
