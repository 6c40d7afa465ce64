"""Part 8: swapping documents in at scale — what one ingest costs as the knowledge base grows (first-time
answers, the other half of part 8, are `bench_first_answers.py`).

At each size (10k / 50k / 200k passages in a full run; hashing embeddings, so that the embedding cost
is out of the picture and a 200k build takes minutes, not days): full ingest, unchanged re-ingest,
add one 10-passage document, replace it, delete it (`delete_document`), hybrid query p50/p95. The same
measurements run on two code trees in the same run: "before" (by default `git archive main`, the code
before the incremental lexical index and the per-document state) and "after" (this tree). Each
(tree, size) runs in a child process of its own, so that its peak RSS is its own and the tree imported
is the one asked for (`sys.path[0]`).

    .venv/bin/python benchmarks/bench_scale.py --worker --code . --size 10000 --work /tmp/s  # one cell
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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


def _cell(code: Path, size: int, work: Path, queries: int, label: str) -> dict:
    """Run one cell in a child process and return its JSON (or its error)."""
    from bench_common import child_json, log

    log(f"scale: {label} tree at {size:,} passages…")
    t = time.perf_counter()
    cell = child_json(HERE / "bench_scale.py", ["--worker", "--code", str(code), "--size", str(size), "--work",
                                                str(work), "--queries", str(queries), "--label", label], code)
    if cell["status"] != "ok":
        return cell
    cell["wall_s"] = round(time.perf_counter() - t, 1)
    log(f"  {label} @ {size:,}: full {cell['full_ingest_s']} s, unchanged {cell['unchanged_reingest_s']['median']} s, "
        f"add {cell['add_one_document_s']} s, replace {cell['replace_one_document_s']} s, "
        f"delete {cell['delete_one_document_s']} s, hybrid p50 {cell['hybrid_ms']['p50']} ms")
    return cell


def run(cfg: dict, work: Path) -> dict:
    from bench_common import ROOT, before_tree, loadavg

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
        from bench_first_answers import first_time_answers

        out["first_time_answers"] = first_time_answers(cfg, work)
    except Exception as exc:  # noqa: BLE001 — reported, the scale cells still run
        out["first_time_answers"] = {"status": f"error: {type(exc).__name__}: {exc}"[:400]}
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
    ap.add_argument("--articles", type=int, default=40, help="PIAF articles of the first-time answers' KB")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.code.resolve(), args.size, args.work, args.queries, args.label)))
        return 0
    sys.path.insert(0, str(HERE))
    work = args.work or Path(tempfile.mkdtemp(prefix="summit-scale-"))
    sizes = [int(s) for s in (args.sizes or "10000,50000,200000").split(",")]
    result = run({"scale_sizes": sizes, "scale_queries": args.queries, "scale_before": args.before,
                  "scale_trees": args.trees.split(","),
                  "answer_piaf_articles": args.articles, "answer_new_questions": args.queries}, work)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
