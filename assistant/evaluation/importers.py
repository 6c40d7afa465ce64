"""Turn a SQuAD-format QA file (v1.1 or v2.0) into a knowledge-base folder plus an evaluation data set.

Output layout::

    OUT/docs/<slug>.txt        one document per article: title on the first line, then its
                               paragraphs ("context"), separated by blank lines
    OUT/docs/_metadata.json    title (and language, when given) of every document
    OUT/dataset.jsonl          one EvalItem per question: must_include = the answer texts as one group
                               of alternatives, sources = [the article's file] (empty for impossible
                               questions: no document holds their answer), answerable = not
                               is_impossible; meta keeps the article, paragraph and plausible answers

Then `ingest(settings, source_dir=OUT/docs, kb=NAME)` and `assistant eval run OUT/dataset.jsonl --kb NAME`.
"""
from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from assistant.evaluation.dataset import DatasetError, EvalItem, write_dataset


@dataclass
class ImportReport:
    docs_dir: Path
    dataset: Path
    articles: int = 0
    paragraphs: int = 0
    questions: int = 0
    unanswerable: int = 0
    skipped: list[str] = field(default_factory=list)  # question ids without any answer text


def slugify(title: str, max_len: int = 60) -> str:
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return text[:max_len].rstrip("-") or "article"


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{name}-{n}"
        n += 1
    used.add(candidate)
    return candidate


def _answer_texts(answers: list) -> list[str]:
    """Distinct answer strings in first-seen order (SQuAD repeats one answer per annotator)."""
    seen: list[str] = []
    for ans in answers or []:
        raw = ans.get("text") if isinstance(ans, dict) else ans
        text = str(raw or "").strip()
        if text and text not in seen:
            seen.append(text)
    return seen


def read_squad(path: str | Path) -> tuple[list[dict], str]:
    """(articles, version) of a SQuAD-format JSON file, with a clear error when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"SQuAD file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid UTF-8 JSON: {exc}") from None
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list) or not all(isinstance(a, dict) and "paragraphs" in a for a in articles):
        raise DatasetError(f"{path} is not in SQuAD format (expected {{'data': [{{'title', 'paragraphs'}}]}})")
    return articles, str(data.get("version", ""))


def import_squad(
    path: str | Path,
    out_dir: str | Path,
    articles: int | None = None,
    seed: int = 0,
    max_questions: int | None = None,
    lang: str | None = None,
    id_prefix: str = "",
) -> ImportReport:
    """Write `out_dir/docs/` and `out_dir/dataset.jsonl` from a SQuAD file (see the module docstring).

    `articles`: sample that many articles with `random.Random(seed)` (kept in file order);
    `max_questions`: at most that many questions per article, sampled with the same generator.
    """
    all_articles, _version = read_squad(path)
    rng = random.Random(seed)
    indices = list(range(len(all_articles)))
    if articles is not None and articles < len(indices):
        indices = sorted(rng.sample(indices, articles))

    out_dir = Path(out_dir)
    docs_dir = out_dir / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    for old in docs_dir.glob("*.txt"):  # a re-import replaces the previous sample
        old.unlink()
    report = ImportReport(docs_dir=docs_dir, dataset=out_dir / "dataset.jsonl")
    used_names: set[str] = set()
    used_ids: set[str] = set()
    metadata: dict[str, dict] = {}
    items: list[EvalItem] = []

    for idx in indices:
        article = all_articles[idx]
        title = str(article.get("title") or f"article {idx}").replace("_", " ").strip()
        contexts = [p.get("context", "").strip() for p in article["paragraphs"]]
        contexts = [c for c in contexts if c]
        if not contexts:
            continue
        name = _unique(slugify(title), used_names) + ".txt"
        (docs_dir / name).write_text(title + "\n\n" + "\n\n".join(contexts) + "\n", encoding="utf-8")
        metadata[name] = {"title": title, **({"language": lang} if lang else {})}
        report.articles += 1
        report.paragraphs += len(contexts)

        questions = [(pi, qa) for pi, p in enumerate(article["paragraphs"]) for qa in p.get("qas", [])]
        if max_questions is not None and len(questions) > max_questions:
            questions = [questions[i] for i in sorted(rng.sample(range(len(questions)), max_questions))]
        for pi, qa in questions:
            qid = _unique(id_prefix + str(qa.get("id") or f"{name}-{pi}"), used_ids)
            impossible = bool(qa.get("is_impossible", False))
            answers = _answer_texts(qa.get("answers", []))
            if not impossible and not answers:
                report.skipped.append(qid)
                continue
            meta = {"article": name, "paragraph": pi}
            plausible = _answer_texts(qa.get("plausible_answers", []))
            if plausible:
                meta["plausible_answers"] = plausible
            items.append(
                EvalItem(
                    id=qid,
                    question=str(qa.get("question", "")).strip() or "?",
                    must_include=[] if impossible else [answers],
                    sources=[] if impossible else [name],  # the documents that contain the answer
                    answerable=not impossible,
                    lang=lang,
                    type="unanswerable" if impossible else "factual",
                    meta=meta,
                )
            )
            report.questions += 1
            report.unanswerable += impossible

    (docs_dir / "_metadata.json").write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if not items:
        raise DatasetError(f"{path}: no usable question in the selected articles")
    write_dataset(items, report.dataset)
    return report


def import_nomiracl(
    folder: str | Path,
    out_dir: str | Path,
    queries: int | None = None,
    seed: int = 0,
    lang: str | None = "fr",
) -> ImportReport:
    """NoMIRACL (queries.jsonl + corpus.jsonl) -> OUT/docs/ + OUT/dataset.jsonl, a refusal benchmark.

    Every Wikipedia article among the sampled queries' passages becomes one document (title, then its
    passages in order). Queries of the "non_relevant" subset are unanswerable (the right behaviour is
    to decline); "relevant" ones are answerable without gold answer text or gold document (NoMIRACL
    judges passages, not answers), so they only measure false refusals. `queries`: sample that many,
    half from each subset, with `random.Random(seed)`.
    """
    folder, out_dir = Path(folder), Path(out_dir)
    try:
        rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read NoMIRACL queries in {folder}: {exc}") from None
    if queries is not None and queries < len(rows):
        rng = random.Random(seed)
        by_subset: dict[str, list[dict]] = {}
        for row in rows:
            by_subset.setdefault(row.get("subset", ""), []).append(row)
        picked: list[dict] = []
        for i, (_name, group) in enumerate(sorted(by_subset.items())):
            share = queries // len(by_subset) + (1 if i < queries % len(by_subset) else 0)
            picked += rng.sample(group, min(share, len(group)))
        order = {id(r): n for n, r in enumerate(rows)}
        rows = sorted(picked, key=lambda r: order[id(r)])
    wanted = {d for r in rows for d in r.get("docids", [])}
    passages: dict[str, dict] = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                p = json.loads(line)
                if p["docid"] in wanted:
                    passages[p["docid"]] = p

    articles: dict[str, list[tuple[int, dict]]] = {}
    for docid, p in passages.items():
        art, _, idx = docid.partition("#")
        articles.setdefault(art, []).append((int(idx) if idx.isdigit() else 0, p))
    docs_dir = out_dir / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    for old in docs_dir.glob("*.txt"):
        old.unlink()
    report = ImportReport(docs_dir=docs_dir, dataset=out_dir / "dataset.jsonl")
    metadata, used = {}, set()
    for art, parts in sorted(articles.items()):
        parts.sort(key=lambda t: t[0])
        title = parts[0][1].get("title") or art
        name = _unique(f"{slugify(title, 50)}-{art}", used) + ".txt"
        (docs_dir / name).write_text(title + "\n\n" + "\n\n".join(p["text"].strip() for _, p in parts) + "\n", encoding="utf-8")
        metadata[name] = {"title": title, **({"language": lang} if lang else {})}
        report.articles += 1
        report.paragraphs += len(parts)
    (docs_dir / "_metadata.json").write_text(json.dumps(metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    items = []
    for row in rows:
        answerable = row.get("subset") == "relevant"
        items.append(EvalItem(id=str(row["query_id"]), question=row["query"], answerable=answerable, lang=lang,
                              type=row.get("subset") or None, meta={"docids": row.get("docids", [])}))
        report.questions += 1
        report.unanswerable += not answerable
    if not items:
        raise DatasetError(f"{folder}: no query selected")
    write_dataset(items, report.dataset)
    return report
