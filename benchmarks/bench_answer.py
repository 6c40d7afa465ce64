"""Parts 4 and 5: answer latency per stage on the gold set, and cold start of the CLI and the app.

Part 4 asks the gold set (evals/paris_summit.jsonl; history questions first, as the eval runner does,
only the scored question timed) through `Assistant.ask` with the default offline generator, in one
warm process, and reports p50/p95 of every stage in `answer.timings`.

Part 5 runs `assistant ask "…"` as a fresh process (under /usr/bin/time -v for the peak resident
memory), next to two references measured in the same run: a bare interpreter and `assistant --help`
(the CLI's own imports, no work). The Streamlit app is started as a fresh server and driven by a
headless Chromium (Playwright, Debian's chromium) until its first answer is drawn; its peak resident
memory is the server's VmHWM.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_common import ROOT, clean_env, log, percentile, settings, summary

STAGES = ("rewrite", "embed", "retrieve", "generate", "verify", "total")
QUESTION = "Combien de pays ont signé la déclaration ?"


def prepare_gold_kb(work: Path) -> Path:
    """knowledge/ indexed into a private data dir (once per run)."""
    from assistant.indexing import ingest

    data = work / "gold-data"
    ingest(settings(data), source_dir=ROOT / "knowledge", kb="default")
    return data


def chain_available() -> bool:
    try:
        from assistant.chain import Assistant  # noqa: F401
    except ImportError:
        return False
    return True


def answer_latency(cfg: dict, data: Path) -> dict:
    if not chain_available():
        return {"status": "n/a: assistant.chain is missing"}
    from assistant.chain import Assistant
    from assistant.evaluation.runner import ask_item

    from bench_corpora import gold_items

    st = settings(data)
    assistant = Assistant(st, "default")
    items = gold_items()
    if cfg.get("answer_questions"):
        items = items[: cfg["answer_questions"]]
    t = time.perf_counter()
    first = assistant.ask(items[0].question)
    first_ms = (time.perf_counter() - t) * 1000
    log(f"part 4: {len(items)} gold questions x {cfg['answer_passes']} passes (first answer in a warm-up: {first_ms:.0f} ms)")
    per_stage: dict[str, list[list[float]]] = {s: [] for s in STAGES}
    wall: list[list[float]] = []
    errors = 0
    for _ in range(cfg["answer_passes"]):
        stage_ms: dict[str, list[float]] = {s: [] for s in STAGES}
        w = []
        for item in items:
            answer, latency_ms, _history_ms = ask_item(assistant, item)
            errors += bool(answer.error)
            w.append(latency_ms)
            for s in STAGES:
                if s in answer.timings:
                    stage_ms[s].append(answer.timings[s])
        wall.append(w)
        for s in STAGES:
            per_stage[s].append(stage_ms[s])
    out = {
        "questions": len(items),
        "passes": cfg["answer_passes"],
        "generator": st.resolved_generator,
        "first_answer_in_process_ms": round(first_ms, 1),
        "errors": errors,
        "stages": {},
    }
    for s in STAGES:
        runs = [r for r in per_stage[s] if r]
        if runs:
            out["stages"][s] = {
                "p50_ms": summary([percentile(r, 50) for r in runs], 2),
                "p95_ms": summary([percentile(r, 95) for r in runs], 2),
                "answers_with_stage": len(runs[0]),
            }
    out["wall_ms"] = {"p50_ms": summary([percentile(r, 50) for r in wall], 2),
                      "p95_ms": summary([percentile(r, 95) for r in wall], 2)}
    out["target_p50_ms"] = 1500.0
    out["met"] = out["wall_ms"]["p50_ms"]["median"] <= 1500.0
    return out


# ---------------------------------------------------------------- cold start
_TIME = shutil.which("time", path="/usr/bin:/bin")


def _timed_process(cmd: list[str], env: dict, timeout: float = 300) -> dict:
    """Wall time and peak RSS of one fresh process (/usr/bin/time -v, else getrusage of children)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    full = [_TIME, "-v", *cmd] if _TIME else cmd
    t = time.perf_counter()
    proc = subprocess.run(full, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    rss_mb = None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if m:
        rss_mb = int(m.group(1)) / 1024
    else:  # only meaningful when this child is the largest so far
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rss_mb = after / 1024 if after > before else None
    return {"wall_s": wall, "rss_mb": rss_mb, "rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def _cli_env(data: Path) -> dict:
    return clean_env(ASSISTANT_DATA_DIR=str(data), ASSISTANT_KNOWLEDGE_DIR=str(ROOT / "knowledge"))


def cli_cold_start(cfg: dict, data: Path) -> dict:
    exe = str(Path(sys.executable).parent / "assistant")
    env = _cli_env(data)
    commands = {
        "python_bare": [sys.executable, "-c", "pass"],
        "assistant_help": [exe, "--help"],
        # what `ask` must import before it can do anything (the chain, Chroma, LangChain runnables)
        "imports_only": [sys.executable, "-c", "import assistant.chain, assistant.retrieval, chromadb"],
        "assistant_ask": [exe, "ask", QUESTION],
    }
    probe = subprocess.run([exe, "ask", "--help"], env=env, capture_output=True, text=True, cwd=ROOT)
    if probe.returncode != 0:
        return {"status": "n/a: `assistant ask` is not available", "detail": probe.stderr[-500:]}
    runs: dict[str, list[dict]] = {k: [] for k in commands}
    for rep in range(cfg["cold_reps"]):
        for name, cmd in commands.items():
            r = _timed_process(cmd, env)
            if r["rc"] != 0:
                return {"status": f"failed: {name} exited {r['rc']}", "detail": (r["stderr"] or r["stdout"])[-800:]}
            runs[name].append(r)
    out = {name: {"wall_s": summary([r["wall_s"] for r in rs], 3),
                  "peak_rss_mb": summary([r["rss_mb"] for r in rs if r["rss_mb"]], 1)}
           for name, rs in runs.items()}
    out["reps"] = cfg["cold_reps"]
    out["rss_method"] = "/usr/bin/time -v" if _TIME else "resource.getrusage(RUSAGE_CHILDREN)"
    out["answer_excerpt"] = " ".join(runs["assistant_ask"][-1]["stdout"].split())[:160]
    out["target_s"] = 3.0
    out["met"] = out["assistant_ask"]["wall_s"]["median"] <= 3.0
    log(f"part 5: `assistant ask` cold {out['assistant_ask']['wall_s']['median']} s, "
        f"peak RSS {out['assistant_ask']['peak_rss_mb']['median']} MB")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def app_cold_start(cfg: dict, data: Path, work: Path) -> dict:
    app = ROOT / "ui" / "app.py"
    chromium = Path("/usr/bin/chromium")
    if not app.is_file():
        return {"status": "n/a: ui/app.py is missing"}
    if not chromium.exists():
        return {"status": "n/a: /usr/bin/chromium is missing (apt-get install chromium)"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"status": "n/a: playwright is not installed"}

    env = _cli_env(data)
    # the reference: a minimal Streamlit chat app (chat input, echoes the question) on the same server
    # and browser — what Streamlit itself costs before our app does anything
    echo = work / "echo_app.py"
    echo.write_text('import streamlit as st\nq = st.chat_input("Question")\n'
                    'if q:\n    st.chat_message("assistant").write("echo: " + q)\n    st.sidebar.write("#1 · done")\n',
                    encoding="utf-8")
    runs, refs = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium),
                                     args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                           "--disable-background-networking", "--disable-component-update"])
        try:
            for rep in range(cfg["cold_reps"]):
                refs.append(_one_app_run(browser, env, work, f"echo{rep}", echo))
                runs.append(_one_app_run(browser, env, work, rep, app))
        finally:
            browser.close()
    out = {
        "reps": cfg["cold_reps"],
        "reference_echo_app": {
            "server_healthy_s": summary([r["healthy_s"] for r in refs], 3),
            "chat_input_visible_s": summary([r["ready_s"] for r in refs], 3),
            "first_answer_s": summary([r["answer_s"] for r in refs], 3),
            "server_peak_rss_mb": summary([r["rss_mb"] for r in refs if r["rss_mb"]], 1),
        },
        "server_healthy_s": summary([r["healthy_s"] for r in runs], 3),
        "chat_input_visible_s": summary([r["ready_s"] for r in runs], 3),
        "first_answer_s": summary([r["answer_s"] for r in runs], 3),
        "first_answer_after_ready_s": summary([r["answer_s"] - r["ready_s"] for r in runs], 3),
        "server_peak_rss_mb": summary([r["rss_mb"] for r in runs if r["rss_mb"]], 1),
        "rss_method": "VmHWM of the streamlit server process",
        "target_s": 5.0,
    }
    out["met"] = out["first_answer_s"]["median"] <= 5.0
    log(f"part 5: app first answer {out['first_answer_s']['median']} s after launch "
        f"(echo app {out['reference_echo_app']['first_answer_s']['median']} s), "
        f"server peak RSS {out['server_peak_rss_mb']['median']} MB")
    return out


def _one_app_run(browser, env: dict, work: Path, rep, app: Path) -> dict:
    port = _free_port()
    logf = open(work / f"streamlit-{rep}.log", "w")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(180_000)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc, 180)
        healthy = time.perf_counter() - t0
        page.goto(f"http://127.0.0.1:{port}")
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for()
        ready = time.perf_counter() - t0
        box.fill(QUESTION)
        box.press("Enter")
        # the UI draws the answer's entry in the sidebar once the answer and its source cards are drawn
        page.get_by_test_id("stSidebar").get_by_text("#1 · ").wait_for()
        answered = time.perf_counter() - t0
        rss = _vm_hwm_mb(proc.pid)
    finally:
        page.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        logf.close()
    return {"healthy_s": healthy, "ready_s": ready, "answer_s": answered, "rss_mb": rss}
