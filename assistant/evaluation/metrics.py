"""Evaluation metrics as pure functions: no I/O, no model, no LLM.

Per-question functions take plain values (answer text, source names, citation dicts) so they can be
tested on hand-made cases; `aggregate` and `slice_results` work on the per-question result dicts the
runner writes to report.json.
"""
from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

# ---------------------------------------------------------------- text normalisation

_PUNCT_MAP = str.maketrans(
    {
        "\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
        '"': " ", "\u201c": " ", "\u201d": " ", "\u00ab": " ", "\u00bb": " ", "\u201e": " ",
        "-": " ", "\u2010": " ", "\u2011": " ", "\u2012": " ", "\u2013": " ", "\u2014": " ", "\u2212": " ",
        "\u00a0": " ", "\u202f": " ", "\u2009": " ",
    }
)
_SPACES = re.compile(r"\s+")
_MARKER = re.compile(r"\[\d+(?:\s*[,;]\s*\d+)*\]")


def fold(text: str) -> str:
    """Case-, accent- and space-insensitive form of `text`.

    Lower-cases (casefold), strips accents (NFKD minus combining marks, so "Ouïghours" -> "ouighours",
    "œ" stays a letter), unifies apostrophes, turns double quotes of any style (« », “ ”, ") and hyphens
    and dashes into spaces ("États-Unis" == "etats unis", « ouverte » == "ouverte") and collapses runs of
    white space.
    """
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().translate(_PUNCT_MAP)
    return _SPACES.sub(" ", text).strip()


def strip_markers(text: str) -> str:
    """Remove citation markers like [1] or [1, 2] so their digits never match a number."""
    return _MARKER.sub(" ", text or "")


def contains(text: str, alternative: str) -> bool:
    """Whether `alternative` occurs in `text` after folding both.

    Edges are respected by character class: a number may not touch another digit on either side ("61" is
    not found in "161" or "618"); a word must start a word ("US" is not found in "plus") but may run on
    ("vice-premier" is found in "vice-premiers", "Zhang Guoqing" in the glued "Zhang GuoqingVice-premier"
    of a badly extracted article). A digit next to a letter is fine ("2025" in "2025qui").
    """
    needle = fold(alternative)
    if not needle:
        return False
    hay = fold(text)
    start = 0
    while (pos := hay.find(needle, start)) != -1:
        end = pos + len(needle)
        before = hay[pos - 1] if pos > 0 else ""
        after = hay[end] if end < len(hay) else ""
        if _edge_ok(needle[0], before) and (not needle[-1].isdigit() or not after.isdigit()):
            return True
        start = pos + 1
    return False


def _edge_ok(inner: str, outer: str) -> bool:
    if not outer:
        return True
    if inner.isdigit():
        return not outer.isdigit()
    if inner.isalpha():
        return not outer.isalpha()
    return True


# ---------------------------------------------------------------- answer content


def must_include(answer: str, groups: Sequence[Sequence[str]]) -> tuple[bool, list[list[str]]]:
    """(all groups satisfied, the groups with no alternative found). Empty `groups`: always satisfied.

    Citation markers are removed from the answer first.
    """
    text = strip_markers(answer)
    missing = [list(group) for group in groups if not any(contains(text, alt) for alt in group)]
    return not missing, missing


def refusal_outcome(answerable: bool, declined: bool) -> str:
    """One of "answered" / "declined" (both right), "false_refusal", "false_answer".

    (The runner records "error" instead when the chain failed without an answer; it counts as wrong.)"""
    if answerable:
        return "false_refusal" if declined else "answered"
    return "declined" if declined else "false_answer"


def is_correct(answerable: bool, declined: bool, content_ok: bool) -> bool:
    """Answerable: answered and every must_include group found. Unanswerable: declined."""
    return (not declined and content_ok) if answerable else declined


# ---------------------------------------------------------------- retrieval


def same_source(a: str, b: str) -> bool:
    """Source names match exactly, or by file name when one of them carries a folder."""
    if a == b:
        return True
    return PurePosixPath(a.replace("\\", "/")).name == PurePosixPath(b.replace("\\", "/")).name


def _in_gold(source: str, gold: Iterable[str]) -> bool:
    return any(same_source(source, g) for g in gold)


def hit_at_k(ranked_sources: Sequence[str], gold: Sequence[str], k: int) -> float | None:
    """1.0 when a gold source is among the first k retrieved passages; None without gold sources."""
    if not gold:
        return None
    return 1.0 if any(_in_gold(s, gold) for s in ranked_sources[:k]) else 0.0


def recall_at_k(ranked_sources: Sequence[str], gold: Sequence[str], k: int) -> float | None:
    """Share of the gold sources found among the first k retrieved passages."""
    if not gold:
        return None
    top = ranked_sources[:k]
    return sum(1 for g in set(gold) if any(same_source(s, g) for s in top)) / len(set(gold))


def reciprocal_rank(ranked_sources: Sequence[str], gold: Sequence[str], k: int | None = None) -> float | None:
    """1/rank of the first retrieved passage from a gold source (0 when none in the first k)."""
    if not gold:
        return None
    for rank, source in enumerate(ranked_sources[:k] if k else ranked_sources, start=1):
        if _in_gold(source, gold):
            return 1.0 / rank
    return 0.0


# ---------------------------------------------------------------- citations

_ELLIPSIS = re.compile(r"\s*(?:\u2026|\.\.\.)\s*")


def quote_in_passage(quote: str, passage: str) -> bool:
    """Whether the quote is found in the passage after folding. An elided quote ("a … b") is found when
    every fragment is. An empty quote is never valid."""
    fragments = [fold(f).strip(" \"'") for f in _ELLIPSIS.split(quote or "")]
    fragments = [f for f in fragments if f]
    if not fragments:
        return False
    hay = fold(passage)
    return all(f in hay for f in fragments)


def citation_validity(citations: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(valid, total) over the shown citations: valid when `quote` is found in `passage_text`."""
    valid = sum(1 for c in citations if quote_in_passage(c.get("quote", ""), c.get("passage_text", "")))
    return valid, len(citations)


def citations_correct(cited_sources: Sequence[str], gold: Sequence[str]) -> bool | None:
    """Whether every cited source is a gold source; None when nothing is cited or there is no gold."""
    if not cited_sources or not gold:
        return None
    return all(_in_gold(s, gold) for s in cited_sources)


# ---------------------------------------------------------------- aggregation


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0-100) with linear interpolation between order statistics (numpy's default)."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * min(max(p, 0.0), 100.0) / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def _mean(values: Iterable[float | bool | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


# The headline metrics, in report order: name -> (higher is better, label).
METRICS: dict[str, tuple[bool, str]] = {
    "accuracy": (True, "overall accuracy"),
    "answer_accuracy": (True, "answer accuracy (answerable)"),
    "refusal_accuracy": (True, "refusal accuracy"),
    "false_refusal_rate": (False, "false refusals / answerable"),
    "false_answer_rate": (False, "false answers / unanswerable"),
    "hit_at_k": (True, "retrieval hit@k"),
    "recall_at_k": (True, "retrieval recall@k"),
    "mrr": (True, "retrieval MRR"),
    "context_hit": (True, "expected text in retrieved passages"),
    "citation_validity": (True, "citation validity"),
    "citation_correctness": (True, "citation correctness"),
    "follow_up_detection": (True, "follow-up detection (rewrite decision)"),
    "latency_p50_ms": (False, "latency p50 (ms)"),
    "latency_p95_ms": (False, "latency p95 (ms)"),
}
RATE_METRICS = [m for m in METRICS if not m.startswith("latency")]


def aggregate(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary metrics over per-question results (see runner.score_item for their keys).

    Means skip questions where a metric does not apply (None); citation validity is the share of all
    shown citations (micro average), the other rates are per question.
    """
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    outcomes = [r["outcome"] for r in results]
    valid = sum(r.get("citations_valid", 0) for r in results)
    shown = sum(r.get("citations_total", 0) for r in results)
    latencies = [r["latency_ms"] for r in results if r.get("latency_ms") is not None]
    return {
        "n": len(results),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
        "accuracy": _mean(r["correct"] for r in results),
        "answer_accuracy": _mean(r["correct"] for r in answerable),
        "refusal_accuracy": _mean(o in ("answered", "declined") for o in outcomes),
        "false_refusals": outcomes.count("false_refusal"),
        "false_answers": outcomes.count("false_answer"),
        "false_refusal_rate": outcomes.count("false_refusal") / len(answerable) if answerable else None,
        "false_answer_rate": outcomes.count("false_answer") / len(unanswerable) if unanswerable else None,
        "hit_at_k": _mean(r.get("hit") for r in results),
        "recall_at_k": _mean(r.get("recall") for r in results),
        "mrr": _mean(r.get("rr") for r in results),
        "context_hit": _mean(r.get("context_hit") for r in results),
        "citations_shown": shown,
        "citation_validity": valid / shown if shown else None,
        "citation_correctness": _mean(r.get("citation_correct") for r in results),
        "follow_up_detection": _mean(r.get("rewrite_ok") for r in results),
        "errors": sum(1 for r in results if r.get("error")),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "latency_mean_ms": _mean(latencies),
    }


def slice_results(results: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """`aggregate` per value of `key` (e.g. "lang", "type"); a missing value is grouped under "-"."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault(str(r.get(key) or "-"), []).append(r)
    return {value: aggregate(items) for value, items in sorted(groups.items())}


def check_thresholds(summary: Mapping[str, Any], minimums: Mapping[str, float], maximums: Mapping[str, float] | None = None) -> list[str]:
    """Readable failures: a metric below its minimum / above its maximum, or missing (None)."""
    failures = []
    for name, limit in minimums.items():
        value = summary.get(name)
        if value is None:
            failures.append(f"{name}: not measured (required >= {limit:g})")
        elif value < limit:
            failures.append(f"{name}: {value:.3f} < required {limit:g}")
    for name, limit in (maximums or {}).items():
        value = summary.get(name)
        if value is None:
            failures.append(f"{name}: not measured (required <= {limit:g})")
        elif value > limit:
            failures.append(f"{name}: {value:.3f} > allowed {limit:g}")
    return failures


def diagnose(row: Mapping[str, Any]) -> str:
    """A short reason why a result row is wrong ("" when it is right), for failure lists."""
    if row.get("correct"):
        return ""
    if row.get("error"):
        return f"error: {row['error']}"
    retrieved = {True: "; expected text was retrieved", False: "; expected text not in the retrieved passages", None: ""}
    context = retrieved[row.get("context_hit")]
    if row["outcome"] == "false_answer":
        return "answered although unanswerable"
    if row["outcome"] == "false_refusal":
        return "declined although answerable" + context
    missing = " / ".join("|".join(group) for group in row.get("missing", []))
    if row.get("context_hit") is False:
        return f"retrieval miss: {missing} not in the top-k passages"
    return f"answer lacks {missing}" + context
