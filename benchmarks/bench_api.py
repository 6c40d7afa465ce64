"""Part 7: the HTTP API under concurrent clients, next to its floor and to what users do today.

A fresh `assistant serve` (extractive generator) on a free loopback port over the gold knowledge base.
Client threads (httpx, one connection each) send `POST /v1/chat/completions` and `POST /v1/search` at
1, 8 and 32 concurrent clients; every request's latency is recorded, throughput = requests / wall.
Both sides first answer every question once, untimed (caches warm). References measured in the same
run, on the same questions:
- the floor: `Assistant.ask` / `retriever.search` in this process, serially (one client), interleaved
  request by request with the one-client API figures; for search also from as many threads as the
  machine has cores ("one process with both cores");
- today's path: 8 concurrent `assistant ask` processes, one question each (each loads the embedding
  model and Chroma again).
Targets (issue 11): chat p50 at 8 clients ≤ 2 × the in-process p50; search throughput at 32 clients
≥ 0.8 × the one-process-all-cores throughput; chat p50 at 8 clients ≥ 20 × better than the
process-per-question p50.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_common import ROOT, clean_env, log, percentile, settings

CHAT_TARGET_X = 2.0
SEARCH_TARGET_RATIO = 0.8
PROCESS_TARGET_X = 20.0


def _questions(n: int) -> list[str]:
    from bench_corpora import gold_items

    qs = [i.question for i in gold_items() if not getattr(i, "history", None)]
    return (qs * (n // max(len(qs), 1) + 1))[:n]


def _stats(latencies_s: list[float], wall_s: float, errors: int) -> dict:
    ms = [x * 1000 for x in latencies_s]
    return {"requests": len(ms), "errors": errors, "p50_ms": round(percentile(ms, 50) or 0, 1),
            "p95_ms": round(percentile(ms, 95) or 0, 1),
            "throughput_rps": round(len(ms) / wall_s, 2) if wall_s > 0 else None, "wall_s": round(wall_s, 2)}


def _run_clients(fn, items: list, clients: int) -> dict:
    """`fn(item)` for every item from `clients` threads at once; per-request latency and total wall."""
    lat: list[float] = []
    errors = 0
    lock = threading.Lock()

    def one(item):
        nonlocal errors
        t = time.perf_counter()
        ok = fn(item)
        dt = time.perf_counter() - t
        with lock:
            lat.append(dt)
            errors += not ok

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, items))
    return _stats(lat, time.perf_counter() - t0, errors)


def _interleaved(fa, fb, items: list) -> tuple[dict, dict]:
    """One client each, alternating request by request: (stats of fa, stats of fb)."""
    lat: tuple[list[float], list[float]] = ([], [])
    errors = [0, 0]
    for item in items:
        for i, fn in enumerate((fa, fb)):
            t = time.perf_counter()
            ok = fn(item)
            lat[i].append(time.perf_counter() - t)
            errors[i] += not ok
    return _stats(lat[0], sum(lat[0]), errors[0]), _stats(lat[1], sum(lat[1]), errors[1])


def _start_server(data: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = clean_env(ASSISTANT_DATA_DIR=str(data), ASSISTANT_KNOWLEDGE_DIR=str(ROOT / "knowledge"),
                    ASSISTANT_GENERATOR="extractive", ASSISTANT_API_KEY=None)
    out = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)
    out.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"assistant serve exited with {proc.returncode}: {log_path.read_text()[-800:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise TimeoutError("assistant serve did not become healthy")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run(cfg: dict, data: Path, work: Path) -> dict:
    import httpx

    from assistant.chain import Assistant

    levels = cfg["api_levels"]
    chat_qs = _questions(cfg["api_chat_requests"])
    search_qs = _questions(cfg["api_search_requests"])
    st = settings(data, generator="extractive")

    # the server and the in-process floor side by side; the one-client figures of both are measured
    # interleaved, request by request, so that the load of a shared machine weighs on both alike
    assistant = Assistant(st, "default")
    retriever = assistant.retriever
    cores = os.cpu_count() or 1
    proc, url = _start_server(data, work / "api-server.log")
    chat: dict[str, dict] = {}
    search: dict[str, dict] = {}
    try:
        limits = httpx.Limits(max_connections=max(levels) + 4, max_keepalive_connections=max(levels) + 4)
        with httpx.Client(base_url=url, timeout=600, limits=limits) as h:
            def chat_one(q):
                r = h.post("/v1/chat/completions", json={"model": "default", "messages": [{"role": "user", "content": q}]})
                return r.status_code == 200

            def search_one(q):
                return h.post("/v1/search", json={"query": q}).status_code == 200

            for q in dict.fromkeys(chat_qs):  # warm, untimed: model, index, BM25, the sentences' vectors
                assistant.ask(q)
                chat_one(q)
            floor_chat, chat["1"] = _interleaved(lambda q: not assistant.ask(q).error, chat_one, chat_qs)
            floor_search, search["1"] = _interleaved(lambda q: retriever.search(q) is not None, search_one, search_qs)
            floor_search_cores = _run_clients(lambda q: retriever.search(q) is not None, search_qs, cores)
            log(f"part 7: 1 client: chat p50 {chat['1']['p50_ms']} ms (in process {floor_chat['p50_ms']} ms); "
                f"search {search['1']['throughput_rps']} req/s (in process {floor_search['throughput_rps']} req/s, "
                f"{floor_search_cores['throughput_rps']} req/s from {cores} threads)")
            for n in [n for n in levels if n != 1]:
                chat[str(n)] = _run_clients(chat_one, chat_qs, n)
                search[str(n)] = _run_clients(search_one, search_qs, n)
                log(f"part 7: {n} clients: chat p50 {chat[str(n)]['p50_ms']} ms, {chat[str(n)]['throughput_rps']} req/s; "
                    f"search p50 {search[str(n)]['p50_ms']} ms, {search[str(n)]['throughput_rps']} req/s")
    finally:
        _stop(proc)
    best_in_process_search = max(floor_search["throughput_rps"], floor_search_cores["throughput_rps"])
    del assistant, retriever

    # --- today's path: concurrent `assistant ask` processes
    exe = str(Path(sys.executable).parent / "assistant")
    env = clean_env(ASSISTANT_DATA_DIR=str(data), ASSISTANT_KNOWLEDGE_DIR=str(ROOT / "knowledge"),
                    ASSISTANT_GENERATOR="extractive")
    conc = cfg["api_process_clients"]
    procs_qs = _questions(cfg["api_process_requests"])
    processes = _run_clients(
        lambda q: subprocess.run([exe, "ask", q], cwd=ROOT, env=env, capture_output=True, timeout=900).returncode == 0,
        procs_qs, conc)
    log(f"part 7: {conc} concurrent `assistant ask` processes: p50 {processes['p50_ms']} ms")

    ref_level = "8" if "8" in chat else str(levels[-1])
    top_level = "32" if "32" in search else str(levels[-1])
    out = {
        "levels": levels,
        "cores": cores,
        "in_process": {"chat_1_client": floor_chat, "search_1_thread": floor_search,
                       f"search_{cores}_threads": floor_search_cores},
        "api_chat": chat,
        "api_search": search,
        "process_per_question": {"concurrent_processes": conc, **processes},
        "reference_level": ref_level,
        "ratios": {
            "chat_p50_vs_in_process": round(chat[ref_level]["p50_ms"] / floor_chat["p50_ms"], 2),
            "search_throughput_vs_one_process": round(search[top_level]["throughput_rps"] / best_in_process_search, 3),
            "process_p50_vs_api_chat_p50": round(processes["p50_ms"] / chat[ref_level]["p50_ms"], 1),
        },
        "errors": sum(s["errors"] for s in (*chat.values(), *search.values())) + processes["errors"],
    }
    r = out["ratios"]
    out["met"] = {
        "chat_p50_within_2x_in_process": r["chat_p50_vs_in_process"] <= CHAT_TARGET_X,
        "search_throughput_ge_0_8_one_process": r["search_throughput_vs_one_process"] >= SEARCH_TARGET_RATIO,
        "p50_20x_better_than_processes": r["process_p50_vs_api_chat_p50"] >= PROCESS_TARGET_X,
    }
    return out
