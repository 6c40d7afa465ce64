"""`benchmarks/run.py --smoke` runs every part end to end on tiny sizes and writes the expected results.

Only the shape of results.json is checked: benchmarks are never timed assertions.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, SHARED

pytestmark = pytest.mark.slow

PIAF = SHARED / "external" / "piaf" / "piaf-v1.1.json"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    if not PIAF.is_file():
        pytest.skip(f"{PIAF} is missing (the benchmarks run on PIAF paragraphs)")
    out = tmp_path_factory.mktemp("bench") / "results.json"
    work = out.parent / "work"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out), "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert out.is_file(), f"no results written; stderr:\n{proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text(encoding="utf-8"))


def _ok(part: dict) -> None:
    assert part.get("status") == "ok", part.get("status")


def test_smoke_run_succeeds_and_prints_the_table(smoke):
    proc, results = smoke
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "figure" in proc.stdout and "1 ingest" in proc.stdout and "6 quality" in proc.stdout
    assert results["mode"] == "smoke"
    for key in ("date", "command", "machine", "config", "total_seconds"):
        assert key in results
    assert {"cores", "cpu_model", "loadavg_at_start"} <= results["machine"].keys()


def test_ingestion_and_reingest_keys(smoke):
    _, r = smoke
    ing, re = r["ingestion"], r["reingest"]
    _ok(ing)
    _ok(re)
    for key in ("passages", "raw_encoder_passages_per_s", "pipeline_passages_per_s", "pipeline_vs_raw",
                "pipeline_stage_seconds", "met"):
        assert key in ing
    assert ing["passages"] > 0
    assert {"median", "min", "max", "n"} <= ing["pipeline_vs_raw"].keys()
    for key in ("full_seconds", "unchanged_seconds", "ratio", "met"):
        assert key in re
    tune = r["encoder_tuning"]
    _ok(tune)
    assert tune["variants"] and {"variant", "batch", "passages_per_s"} <= tune["best"].keys()


def test_retrieval_keys(smoke):
    _, r = smoke
    ret = r["retrieval"]
    _ok(ret)
    assert "piaf_e5" in ret["scales"] and "300" in ret["scales"]
    for scale in ret["scales"].values():
        for method in ("exact", "dense", "lexical", "hybrid", "embed", "hybrid_with_embed"):
            assert {"p50_ms", "p95_ms"} <= scale[method].keys()
        assert 0.0 <= scale["dense_recall_at_10"] <= 1.0
    assert "met" in ret


def test_answer_and_cold_start_keys(smoke):
    _, r = smoke
    ans = r["answer_latency"]
    _ok(ans)
    if "stages" in ans:  # "n/a" while the chain does not exist
        assert {"embed", "retrieve", "generate", "total"} <= ans["stages"].keys()
        assert {"p50_ms", "p95_ms"} <= ans["wall_ms"].keys()
    cold = r["cold_start"]
    assert {"cli", "app"} <= cold.keys()
    if "assistant_ask" in cold["cli"]:
        assert {"wall_s", "peak_rss_mb"} <= cold["cli"]["assistant_ask"].keys()
        assert "python_bare" in cold["cli"]


def test_quality_keys(smoke):
    _, r = smoke
    q = r["quality"]
    _ok(q)
    for name in ("gold", "piaf"):
        for side in ("ours", "naive"):
            for key in ("hit_at_5", "mrr", "answer_hit_at_5", "answer_mrr", "questions"):
                assert key in q[name][side]
        assert "hit_at_5" in q[name]["delta"]
    assert q["piaf"]["naive"]["k"] == 4 and q["piaf"]["ours"]["k"] == 5


def test_api_keys(smoke):
    _, r = smoke
    api = r["api"]
    _ok(api)
    assert api["errors"] == 0
    for level in api["levels"]:
        for side in ("api_chat", "api_search"):
            assert {"p50_ms", "p95_ms", "throughput_rps", "requests"} <= api[side][str(level)].keys()
    assert {"chat_1_client", "search_1_thread"} <= api["in_process"].keys()
    assert {"p50_ms", "concurrent_processes"} <= api["process_per_question"].keys()
    assert set(api["met"]) == {"chat_p50_within_2x_in_process", "search_throughput_ge_0_8_one_process",
                               "p50_20x_better_than_processes"}


def test_scale_keys(smoke):
    _, r = smoke
    sc = r["scale"]
    _ok(sc)
    (cell,) = sc["after"].values()
    _ok(cell)
    for key in ("full_ingest_s", "unchanged_reingest_s", "add_one_document_s", "replace_one_document_s",
                "delete_one_document_s", "hybrid_ms", "peak_rss_mb", "embed_10_passages_s"):
        assert key in cell
    assert cell["replaced_document_found"] is True


def test_first_time_answer_keys(smoke):
    _, r = smoke
    fta = r["scale"]["first_time_answers"]
    assert set(fta["trees"]) == {"after", "after_sentence_vectors_off"}  # no before tree in smoke mode
    for cell in fta["trees"].values():
        _ok(cell)
        for key in ("first_time_ms", "first_time_generate_ms", "in_sequence_ms", "repeated_ms", "ingest_s",
                    "ingest_until_searchable_s", "sentence_step_s", "first_time_sentences_embedded_per_question"):
            assert key in cell
    assert fta["trees"]["after"]["sentences_embedded_at_ingest"] > 0
    assert fta["trees"]["after_sentence_vectors_off"]["sentences_embedded_at_ingest"] == 0
    assert set(fta["met"]) == {"first_time_p50_le_150_ms"}
