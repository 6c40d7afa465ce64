"""Parts 4 and 5: answer latency per stage on the gold set, and cold start of the CLI and the app.

Part 4 asks the gold set (evals/paris_summit.jsonl; history questions first, as the eval runner does,
only the scored question timed) through `Assistant.ask` with the default offline generator, in one
warm process, and reports p50/p95 of every stage in `answer.timings`.

Part 5 runs `assistant ask "…"` as a fresh process (under /usr/bin/time -v for the peak resident
memory), next to references measured in the same run, interleaved: a bare interpreter, `python -c "import
chromadb"`, `assistant --help` (the CLI's own imports, no work), and the same `ask` from the tree before the
cold-start work (COLD_BEFORE, extracted as part 8 does), with `python -X importtime`'s top costs of both. The Streamlit app is started as a fresh server and driven by a
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


def _timed_process(cmd: list[str], env: dict, timeout: float = 300, cwd: Path = ROOT) -> dict:
    """Wall time and peak RSS of one fresh process (/usr/bin/time -v, else getrusage of children)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    full = [_TIME, "-v", *cmd] if _TIME else cmd
    t = time.perf_counter()
    proc = subprocess.run(full, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
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


# The tree before issue 13's cold-start work (lazy imports, quick exit): `main` when it was written.
COLD_BEFORE = "ec7a558"
# `assistant` run from a given source tree (PYTHONPATH and cwd), the way the console script runs it
_RUN_CLI = "import sys; from assistant.cli import main; sys.exit(main())"
_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _user_env(env: dict, tree: Path) -> dict:
    """A user's process: bytecode cached (written by the warm-up run), stdout block-buffered to the pipe;
    `tree`'s package first on the path."""
    env = {k: v for k, v in env.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}
    env["PYTHONPATH"] = str(tree)
    return env


def _importtime_rows(stderr: str) -> list[tuple[int, int, int, str]]:
    """(cumulative µs, self µs, depth, module) of each line of `python -X importtime` output."""
    rows = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((int(m.group(2)), int(m.group(1)), (len(m.group(3)) - 1) // 2, m.group(4)))
    return rows


def importtime_top(stderrs: list[str], n: int = 15) -> dict:
    """`python -X importtime` outputs of repeated runs → the median of each module's cumulative time and
    of each package's self time (first name component), the n largest of each, and the medians of the totals."""
    import statistics

    runs = [_importtime_rows(e) for e in stderrs]
    cumulative: dict[str, list[int]] = {}
    depth: dict[str, int] = {}
    packages: dict[str, list[int]] = {}
    for rows in runs:
        per_package: dict[str, int] = {}
        for cum, self_us, d, name in rows:
            cumulative.setdefault(name, []).append(cum)
            depth.setdefault(name, d)
            per_package[name.split(".")[0]] = per_package.get(name.split(".")[0], 0) + self_us
        for k, v in per_package.items():
            packages.setdefault(k, []).append(v)
    med = lambda vs: statistics.median(vs + [0] * (len(runs) - len(vs)))  # noqa: E731 — absent = not imported
    return {
        "runs": len(runs),
        "modules": statistics.median(len(r) for r in runs) if runs else 0,
        "total_self_ms": round(statistics.median(sum(r[1] for r in rows) for rows in runs) / 1000, 1) if runs else None,
        "top_cumulative": [{"module": k, "ms": round(med(v) / 1000, 1), "depth": depth[k]}
                           for k, v in sorted(cumulative.items(), key=lambda kv: -med(kv[1]))[:n]],
        "top_packages_self": [{"package": k, "ms": round(med(v) / 1000, 1)}
                              for k, v in sorted(packages.items(), key=lambda kv: -med(kv[1]))[:n]],
    }


def cli_cold_start(cfg: dict, data: Path, work: Path | None = None) -> dict:
    from bench_common import loadavg

    exe = str(Path(sys.executable).parent / "assistant")
    env = _cli_env(data)
    trees = {"after": ROOT}
    before_ref = cfg.get("cold_before", COLD_BEFORE)
    before_note = "not run"
    if before_ref and work is not None:
        from bench_common import before_tree

        code, before_note = before_tree(before_ref, work / "cold")
        if code is not None:
            trees = {"before": code, **trees}
            before_note = f"{before_ref} ({before_note})"
    user = {label: _user_env(env, tree) for label, tree in trees.items()}
    commands = {
        "python_bare": ([sys.executable, "-c", "pass"], user["after"], ROOT),
        # the side-by-side reference of issue 13: the store's own import, nothing of ours
        "import_chromadb": ([sys.executable, "-c", "import chromadb"], user["after"], ROOT),
        "assistant_help": ([exe, "--help"], user["after"], ROOT),
        # what `ask` must import before it can do anything (the chain, Chroma, LangChain runnables)
        "imports_only": ([sys.executable, "-c", "import assistant.chain, assistant.retrieval, chromadb"],
                         user["after"], ROOT),
        "assistant_ask": ([exe, "ask", QUESTION], user["after"], ROOT),
    }
    for label, tree in trees.items():  # the same command line on both trees
        commands[f"ask_{label}"] = ([sys.executable, "-c", _RUN_CLI, "ask", QUESTION], user[label], tree)
        commands[f"help_{label}"] = ([sys.executable, "-c", _RUN_CLI, "--help"], user[label], tree)
    probe = subprocess.run([exe, "ask", "--help"], env=env, capture_output=True, text=True, cwd=ROOT)
    if probe.returncode != 0:
        return {"status": "n/a: `assistant ask` is not available", "detail": probe.stderr[-500:]}
    load_start = loadavg()
    for name, (cmd, cenv, cwd) in commands.items():  # warm-up: bytecode written, files in the page cache
        subprocess.run(cmd, env=cenv, cwd=cwd, capture_output=True, timeout=300)
    runs: dict[str, list[dict]] = {k: [] for k in commands}
    for rep in range(cfg["cold_reps"]):
        for name, (cmd, cenv, cwd) in commands.items():  # interleaved: each rep sees the same load
            r = _timed_process(cmd, cenv, cwd=cwd)
            if r["rc"] != 0:
                return {"status": f"failed: {name} exited {r['rc']}", "detail": (r["stderr"] or r["stdout"])[-800:]}
            runs[name].append(r)
    out = {name: {"wall_s": summary([r["wall_s"] for r in rs], 3),
                  "peak_rss_mb": summary([r["rss_mb"] for r in rs if r["rss_mb"]], 1)}
           for name, rs in runs.items()}
    out["reps"] = cfg["cold_reps"]
    out["before_ref"] = before_note
    out["loadavg_start"], out["loadavg_end"] = load_start, loadavg()
    out["rss_method"] = "/usr/bin/time -v" if _TIME else "resource.getrusage(RUSAGE_CHILDREN)"
    out["answer_excerpt"] = " ".join(runs["assistant_ask"][-1]["stdout"].split())[:160]
    ask = out["assistant_ask"]["wall_s"]["median"]
    out["ratios"] = {"ask_vs_import_chromadb": round(ask / out["import_chromadb"]["wall_s"]["median"], 2),
                     "ask_vs_python_bare": round(ask / out["python_bare"]["wall_s"]["median"], 1)}
    if "ask_before" in out:
        b, a = out["ask_before"]["wall_s"]["median"], out["ask_after"]["wall_s"]["median"]
        out["ratios"]["ask_after_vs_before"] = round(a / b, 3)
        out["ratios"]["ask_before_vs_import_chromadb"] = round(b / out["import_chromadb"]["wall_s"]["median"], 2)
    # where the time goes: `-X importtime` of the same `ask`, before and after, in this run
    out["importtime"] = {}
    stderrs: dict[str, list[str]] = {label: [] for label in trees}
    for _ in range(max(1, min(cfg["cold_reps"], 5))):
        for label in trees:  # interleaved, like the timings
            cmd, cenv, cwd = commands[f"ask_{label}"]
            proc = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=cenv, cwd=cwd, capture_output=True,
                                  text=True, timeout=300)
            stderrs[label].append(proc.stderr)
    for label, errs in stderrs.items():
        out["importtime"][label] = importtime_top(errs, cfg.get("importtime_top", 15))
    out["target_s"] = 3.0
    out["met"] = ask <= 3.0
    # issue 13: ≤ 0.7 s on a quiet machine; on a loaded one compare the ratios to `import chromadb`
    out["target_quiet_s"] = 0.7
    out["met_quiet_target"] = ask <= 0.7
    log(f"part 5: `assistant ask` cold {ask} s (import chromadb {out['import_chromadb']['wall_s']['median']} s, "
        f"× {out['ratios']['ask_vs_import_chromadb']}), peak RSS {out['assistant_ask']['peak_rss_mb']['median']} MB, "
        f"load {load_start}")
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


def main(argv: list[str] | None = None) -> int:
    """Part 5's CLI figures alone: `python benchmarks/bench_answer.py --reps 7 --out FILE.json`."""
    import argparse
    import json
    import tempfile

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--before", default=COLD_BEFORE, help="git ref of the 'before' tree ('' to skip)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="summit-cold-") as tmp:
        work = Path(tmp)
        result = cli_cold_start({"cold_reps": args.reps, "cold_before": args.before or None},
                                prepare_gold_kb(work), work)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if result.get("status", "ok") == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
