"""Small helpers shared by the benchmark parts: timing, summaries, machine facts, settings."""
from __future__ import annotations

import json
import os
import shutil
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared"
PIAF = SHARED / "external" / "piaf" / "piaf-v1.1.json"
NOMIRACL_CORPUS = SHARED / "external" / "nomiracl_fr" / "corpus.jsonl"
GOLD = ROOT / "evals" / "paris_summit.jsonl"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# A benchmark never talks to a tracer, a telemetry endpoint or an LLM the developer configured.
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHROMA_HOST", "CHROMA_PORT", "ASSISTANT_GENERATOR",
             "ASSISTANT_KB", "ASSISTANT_DATA_DIR", "ASSISTANT_EMBEDDINGS", "ASSISTANT_CONFIG", "ASSISTANT_TOP_K",
             "ASSISTANT_EMBEDDING_BATCH"):
    os.environ.pop(_var, None)
os.environ.update({"ANONYMIZED_TELEMETRY": "False", "LANGSMITH_TRACING": "false",
                   "LANGSMITH_TRACING_V2": "false", "LANGCHAIN_TRACING_V2": "false"})


def clean_env(**extra: str | None) -> dict[str, str]:
    """The environment for a child process: the same hermetic variables, plus `extra` (None removes)."""
    env = dict(os.environ)
    # children (the `assistant` command, streamlit) import this tree's package, not another checkout
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def settings(data_dir: Path, **overrides):
    from assistant.config import Settings

    return Settings(data_dir=data_dir, **overrides)


# ---------------------------------------------------------------- timing and summaries
@contextmanager
def timer(out: list[float] | None = None):
    """`with timer(times): ...` appends the elapsed seconds to `times`."""
    box = {"s": 0.0}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0
        if out is not None:
            out.append(box["s"])


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads included."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear interpolation between order statistics (numpy's default)."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * p / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def summary(values: Iterable[float], digits: int = 4) -> dict[str, Any]:
    """Median with min and max of repeated measurements, and how many there were."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(vals), digits),
        "min": round(min(vals), digits),
        "max": round(max(vals), digits),
        "n": len(vals),
    }


def latency_summary(per_pass_ms: list[list[float]]) -> dict[str, Any]:
    """Latencies (ms) from several passes over the same queries: p50 and p95 of each pass, summarised
    as median (min–max) across passes."""
    p50 = [percentile(p, 50) for p in per_pass_ms if p]
    p95 = [percentile(p, 95) for p in per_pass_ms if p]
    return {"p50_ms": summary(p50, 3), "p95_ms": summary(p95, 3), "queries": len(per_pass_ms[0]) if per_pass_ms else 0}


def fmt_range(s: dict | None, unit: str = "", digits: int = 1) -> str:
    """'12.3 (11.9–13.0)' from a summary dict; '—' when missing."""
    if not s or s.get("median") is None:
        return "—"
    med, lo, hi = s["median"], s["min"], s["max"]
    if s.get("n", 0) <= 1 or lo == hi:
        return f"{med:.{digits}f}{unit}"
    return f"{med:.{digits}f}{unit} ({lo:.{digits}f}–{hi:.{digits}f})"


# ---------------------------------------------------------------- the machine
def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu or platform.processor(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": loadavg(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE",
                                             "OPENBLAS_L2_SIZE") if k in os.environ},
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty() -> list[str] | None:
    """Tracked files with uncommitted changes (other than the benchmarks'), or None outside git."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    files = [line[3:] for line in out.stdout.splitlines() if line.strip()]
    return [f for f in files if not f.startswith(("benchmarks/", "tests/test_bench_smoke.py"))]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def child_json(script: Path, args: list[str], code: Path) -> dict:
    """Run a benchmark worker (`script args`) in a child process importing the tree at `code`; its last
    line of output is its JSON result, returned with status "ok" (or just the status of its failure)."""
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(code), str(Path(__file__).resolve().parent)])
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
        return {"status": f"error: {tail}"[:400]}
    cell = json.loads(proc.stdout.strip().splitlines()[-1])
    cell["status"] = "ok"
    return cell


def before_tree(ref: str, work: Path) -> tuple[Path | None, str]:
    """The files of git ref `ref` in `work/before-code` (git archive), with the commit they are."""
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
