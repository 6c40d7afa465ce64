"""Eval reports for the Evals page: finding, loading, tabulating and comparing report.json files.

Works on the JSON alone ({"summary", "config", "results"}, written by `assistant eval`), so the page
never depends on the PNG charts or on the eval package's internals.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from assistant.config import PROJECT_ROOT

DEFAULT_DIR = PROJECT_ROOT / "evals" / "reports"
ENV_DIR = "ASSISTANT_EVAL_REPORTS"  # extra folders of reports, os.pathsep-separated

# metric -> (label, higher is better); the rates, then the latencies
HEADLINE = {
    "accuracy": ("Accuracy", True),
    "answer_accuracy": ("Answer accuracy", True),
    "refusal_accuracy": ("Refusal accuracy", True),
    "hit_at_k": ("Hit@k", True),
    "mrr": ("MRR", True),
    "citation_validity": ("Citation validity", True),
    "false_refusal_rate": ("False refusals", False),
    "latency_p50_ms": ("Latency p50 (ms)", False),
}
RATES = {
    "accuracy": "accuracy", "answer_accuracy": "answer accuracy", "refusal_accuracy": "refusal accuracy",
    "false_refusal_rate": "false refusals", "false_answer_rate": "false answers", "hit_at_k": "hit@k",
    "recall_at_k": "recall@k", "mrr": "MRR", "context_hit": "context hit", "citation_validity": "citation validity",
    "citation_correctness": "citation correctness",
}
SLICE_METRICS = ["accuracy", "hit_at_k", "citation_validity"]
COLORS = {"this run": "#2563eb", "baseline": "#94a3b8",  # chart series -> colour
          "accuracy": "#2563eb", "hit@k": "#60a5fa", "citation validity": "#f59e0b"}


@dataclass
class ReportRef:
    name: str  # the folder's name (or the file's, for a loose report.json)
    path: Path
    mtime: float

    @property
    def label(self) -> str:
        when = datetime.fromtimestamp(self.mtime).strftime("%Y-%m-%d %H:%M")
        return f"{self.name} ({when})"


def report_dirs(extra: str | None = None) -> list[Path]:
    dirs = [DEFAULT_DIR]
    for raw in [os.environ.get(ENV_DIR, ""), extra or ""]:
        dirs += [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve())
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def find_reports(dirs: list[Path]) -> list[ReportRef]:
    """report.json files in each folder and its sub-folders (one level), newest first."""
    found: dict[str, ReportRef] = {}
    for d in dirs:
        candidates = [d / "report.json", *sorted(d.glob("*/report.json"))] if d.is_dir() else []
        for path in candidates:
            if path.is_file():
                found[str(path.resolve())] = ReportRef(path.parent.name, path, path.stat().st_mtime)
    return sorted(found.values(), key=lambda r: -r.mtime)


def load_report(path: Path) -> dict[str, Any]:
    """The report, or ValueError with a readable reason."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict) or not isinstance(data.get("results"), list):
        raise ValueError(f"{path} is not an evaluation report (no summary/results)")
    data.setdefault("config", {})
    return data


def metrics_frame(summary: dict, baseline: dict | None = None) -> pd.DataFrame:
    """One row per rate metric present, for a bar chart (index = metric label)."""
    rows = {label: {"this run": summary[m]} for m, label in RATES.items() if isinstance(summary.get(m), (int, float))}
    if baseline:
        for m, label in RATES.items():
            if label in rows and isinstance(baseline.get(m), (int, float)):
                rows[label]["baseline"] = baseline[m]
    return pd.DataFrame.from_dict(rows, orient="index")


def slice_frame(summary: dict, key: str) -> pd.DataFrame:
    """Per value of a slice (e.g. lang, type): the slice metrics, index = "value (n=…)"."""
    groups = (summary.get("slices") or {}).get(key) or {}
    rows = {
        f"{value} (n={agg.get('n', '?')})": {RATES[m]: agg.get(m) for m in SLICE_METRICS if agg.get(m) is not None}
        for value, agg in groups.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def _citations(row: dict) -> str:
    parts = []
    for c in row.get("citations") or []:
        mark = "" if c.get("valid", True) else " (invalid)"
        parts.append(f"[{c.get('number', '?')}] {c.get('source', '')}{mark}: {c.get('quote', '')}")
    return "\n".join(parts)


def questions_frame(results: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r.get("id") for r in results],
            "ok": [bool(r.get("correct")) for r in results],
            "outcome": [r.get("outcome", "") for r in results],
            "type": [r.get("type") or "" for r in results],
            "lang": [r.get("lang") or "" for r in results],
            "question": [r.get("question", "") for r in results],
            "answer": [r.get("error") or r.get("answer", "") for r in results],
            "citations": [_citations(r) for r in results],
            "hit": [r.get("hit") for r in results],
            "latency (ms)": [r.get("latency_ms") for r in results],
            "why": [r.get("diagnosis") or ("missing: " + ", ".join(map(str, r["missing"])) if r.get("missing") else "")
                    for r in results],
        }
    )


def flipped(current: dict, baseline: dict) -> pd.DataFrame:
    """Questions whose correctness changed between two runs ("fixed" or "broken")."""
    before = {r.get("id"): r for r in baseline.get("results", [])}
    rows = []
    for r in current.get("results", []):
        old = before.get(r.get("id"))
        if old is not None and bool(old.get("correct")) != bool(r.get("correct")):
            rows.append({"id": r.get("id"), "now": "fixed" if r.get("correct") else "broken",
                         "question": r.get("question", ""), "before": old.get("answer", ""), "after": r.get("answer", "")})
    return pd.DataFrame(rows, columns=["id", "now", "question", "before", "after"])


def fmt(value: Any, name: str) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if name.endswith("_ms") else f"{value:.3f}" if isinstance(value, float) else str(value)
