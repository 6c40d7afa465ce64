"""Run a data set through the same chain as the chat and score every answer.

History questions are asked first, in order, each with the turns before it; the scored question is then
asked with all of them as `Turn`s, exactly as a chat would. Only that last call is timed.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant.config import PROJECT_ROOT, Settings
from assistant.evaluation import metrics
from assistant.evaluation.dataset import EvalItem
from assistant.models import Answer, Turn

Progress = Callable[[int, int, str], None]  # (done, total, item id)
SNIPPET = 300  # characters of each retrieved passage kept in report.json


def _citation_passage(citation: Any, answer: Answer) -> str:
    if citation.passage_text:
        return citation.passage_text
    for p in answer.passages:
        if p.chunk_id == citation.chunk_id:
            return p.text
    return ""


def score_item(item: EvalItem, answer: Answer, latency_ms: float | None, k: int) -> dict[str, Any]:
    """One result row of report.json: the answer as shown plus every per-question metric.

    Retrieval and citation metrics apply to answerable questions with gold sources only (None
    otherwise); `context_hit` tells whether the passages given to the generator held the expected text
    at all, which separates retrieval misses from generation misses.
    """
    passages = sorted(answer.passages, key=lambda p: p.rank or 0)
    ranked = [p.source for p in passages]
    gold = item.sources if item.answerable else []
    content_ok, missing = metrics.must_include(answer.text, item.must_include)
    context_ok = None
    if item.answerable and item.must_include:  # over every passage the generator was given (may be > k)
        context_ok, _ = metrics.must_include("\n".join(p.text for p in passages), item.must_include)
    citations = []
    for c in answer.citations:
        valid = metrics.quote_in_passage(c.quote, _citation_passage(c, answer))
        citations.append(
            {"number": c.number, "source": c.source, "chunk_id": c.chunk_id, "quote": c.quote,
             "valid": valid, "supported": c.supported, "support": round(c.support, 3)}
        )
    valid_count = sum(c["valid"] for c in citations)
    outcome = "error" if answer.error and not answer.text else metrics.refusal_outcome(item.answerable, answer.declined)
    row = {
        "id": item.id,
        "question": item.question,
        "history": item.history,
        "lang": item.lang,
        "type": item.type,
        "answerable": item.answerable,
        "must_include": item.must_include,
        "sources": item.sources,
        "standalone_question": answer.standalone_question,
        "follow_up": item.follow_up,
        # the chain answered a rewrite exactly when the question is a follow-up
        "rewrite_ok": None if item.follow_up is None or not item.history or answer.error
        else (answer.standalone_question.strip() != item.question.strip()) == item.follow_up,
        "answer": answer.text,
        "declined": answer.declined,
        "error": answer.error,
        "citations": citations,
        "conflicts": [c.model_dump() for c in answer.conflicts],
        "unsupported_sentences": list(answer.unsupported_sentences),  # dropped by verification
        "removed_markers": answer.removed_markers,
        "retrieved": [
            {"rank": p.rank, "source": p.source, "chunk_id": p.chunk_id, "score": round(p.score, 5),
             "text": " ".join(p.text.split())[:SNIPPET]}
            for p in passages
        ],
        "correct": outcome != "error" and metrics.is_correct(item.answerable, answer.declined, content_ok),
        "content_ok": content_ok if item.answerable else None,
        "missing": missing if item.answerable else [],
        "outcome": outcome,
        "context_hit": context_ok,
        "hit": metrics.hit_at_k(ranked, gold, k),
        "recall": metrics.recall_at_k(ranked, gold, k),
        "rr": metrics.reciprocal_rank(ranked, gold, k),
        "citations_valid": valid_count,
        "citations_total": len(citations),
        "citation_validity": valid_count / len(citations) if citations else None,
        "citation_correct": metrics.citations_correct([c["source"] for c in citations], gold),
        "latency_ms": None if latency_ms is None else round(latency_ms, 1),
        "timings": {name: round(ms, 1) for name, ms in answer.timings.items()},
    }
    row["diagnosis"] = metrics.diagnose(row)
    return row


def ask_item(assistant: Any, item: EvalItem) -> tuple[Answer, float, float]:
    """(answer, latency of the scored question in ms, time spent on its history in ms)."""
    turns: list[Turn] = []
    t0 = time.perf_counter()
    for earlier in item.history:
        previous = assistant.ask(earlier, history=list(turns))
        turns.append(Turn(question=earlier, answer=previous.text))
    t1 = time.perf_counter()
    answer = assistant.ask(item.question, history=turns)
    t2 = time.perf_counter()
    return answer, (t2 - t1) * 1000, (t1 - t0) * 1000


def _failed_answer(item: EvalItem, exc: BaseException) -> Answer:
    return Answer(question=item.question, standalone_question=item.question, error=f"{type(exc).__name__}: {exc}"[:300])


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_config(settings: Settings, kb: str, k: int, dataset: str | Path | None) -> dict[str, Any]:
    from assistant.embeddings import get_embedder
    from assistant.catalog import kb_content_hash, list_documents
    from assistant.store import StoreError

    try:
        docs, kb_hash = list_documents(settings, kb), kb_content_hash(settings, kb)
    except StoreError:  # the chain will report the missing knowledge base per question
        docs, kb_hash = [], None
    generator = settings.resolved_generator
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": str(dataset) if dataset else None,
        "dataset_sha256": file_sha256(dataset)[:16] if dataset and Path(dataset).is_file() else None,
        "kb": kb,
        "kb_hash": kb_hash,
        "kb_documents": len(docs),
        "kb_passages": sum(d.chunks for d in docs),
        "generator": generator,
        "model": settings.llm_model if generator == "openai" else None,
        "embeddings": settings.embeddings,
        "embedding_model": get_embedder(settings).name,
        "k": k,
        "candidates": settings.candidates,
        "chunk_chars": settings.chunk_chars,
        "support_threshold": settings.support_threshold,
        "git_commit": git_commit(),
        "python": platform.python_version(),
    }


def prepare_kb(settings: Settings, kb: str, ingest_dir: str | Path | None = None) -> str | None:
    """Ingest `ingest_dir` into `kb` when given; index the default articles when the default knowledge
    base is still empty. Returns a note for the user, or None when nothing was done."""
    from assistant.catalog import list_documents
    from assistant.indexing import ingest
    from assistant.store import StoreError

    if ingest_dir is not None:
        report = ingest(settings, source_dir=Path(ingest_dir), kb=kb)
        return f"ingested {ingest_dir} into {kb!r}: {report.chunks} passages ({report.embedded} embedded)"
    try:
        empty = not list_documents(settings, kb)
    except StoreError:
        empty = True
    if not empty:
        return None
    if kb == "default":
        report = ingest(settings, kb=kb)
        return f"indexed the default articles: {report.chunks} passages"
    raise StoreError(f"knowledge base {kb!r} is empty or missing: ingest its documents first (--ingest DIR)")


def run(
    items: Sequence[EvalItem],
    settings: Settings,
    kb: str | None = None,
    k: int | None = None,
    dataset: str | Path | None = None,
    assistant: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Ask every item and return the report: {"summary", "config", "results"}.

    `k` sets both the retrieval depth (settings.top_k) and the cut-off of the retrieval metrics.
    An exception in the chain is recorded as that question's error (counted wrong); the run goes on.
    """
    kb = kb or settings.kb
    k = k or settings.top_k
    settings = settings.model_copy(update={"top_k": k})
    if assistant is None:
        from assistant.chain import Assistant

        assistant = Assistant(settings, kb=kb)
    config = run_config(settings, kb, k, dataset)
    t0 = time.perf_counter()
    results = []
    for i, item in enumerate(items, start=1):
        try:
            answer, latency, history_ms = ask_item(assistant, item)
        except Exception as exc:  # noqa: BLE001 - one broken question must not hide the others
            answer, latency, history_ms = _failed_answer(item, exc), None, 0.0
        row = score_item(item, answer, latency, k)
        row["history_ms"] = round(history_ms, 1)
        results.append(row)
        if answer.generator and not config.get("answer_generator"):
            config["answer_generator"], config["answer_model"] = answer.generator, answer.model or None
        if progress:
            progress(i, len(items), item.id)
    config["duration_s"] = round(time.perf_counter() - t0, 2)
    return {"summary": summarise(results), "config": config, "results": results}


def summarise(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    summary = metrics.aggregate(results)
    summary["slices"] = {key: metrics.slice_results(results, key) for key in ("lang", "type")}
    return summary


def write_json(report: dict[str, Any], out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not {"summary", "results"} <= data.keys():
        raise ValueError(f"{path} is not an evaluation report (no summary/results)")
    return data
