"""report.md, PNG charts (matplotlib, Agg backend) and the comparison with a baseline report."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assistant.evaluation.metrics import METRICS, RATE_METRICS

SLICE_COLUMNS = ["accuracy", "answer_accuracy", "refusal_accuracy", "hit_at_k", "mrr", "citation_validity", "latency_p50_ms"]
IGNORED_CONFIG = {"date", "duration_s", "git_commit"}


# ---------------------------------------------------------------- baseline comparison


def compare(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Metric deltas, questions whose correctness flipped, questions added/removed, config changes."""
    deltas = {}
    for name, (higher_better, _label) in METRICS.items():
        old, new = baseline["summary"].get(name), current["summary"].get(name)
        delta = None if old is None or new is None else new - old
        better = None if not delta else (delta > 0) == higher_better
        deltas[name] = {"baseline": old, "current": new, "delta": delta, "better": better}
    old_rows = {r["id"]: r for r in baseline["results"]}
    new_rows = {r["id"]: r for r in current["results"]}
    flipped = []
    for qid, row in new_rows.items():
        before = old_rows.get(qid)
        if before is not None and bool(before["correct"]) != bool(row["correct"]):
            flipped.append(
                {"id": qid, "question": row["question"], "now": "fixed" if row["correct"] else "broken",
                 "before": before.get("answer", ""), "after": row.get("answer", ""), "diagnosis": row.get("diagnosis", "")}
            )
    old_cfg, new_cfg = baseline.get("config", {}), current.get("config", {})
    changes = {
        key: {"baseline": old_cfg.get(key), "current": new_cfg.get(key)}
        for key in sorted(set(old_cfg) | set(new_cfg))
        if key not in IGNORED_CONFIG and old_cfg.get(key) != new_cfg.get(key)
    }
    return {
        "deltas": deltas,
        "flipped": flipped,
        "added": sorted(set(new_rows) - set(old_rows)),
        "removed": sorted(set(old_rows) - set(new_rows)),
        "config_changes": changes,
    }


# ---------------------------------------------------------------- formatting helpers


def fmt(value: Any, name: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if name.endswith("_ms") else f"{value:.3f}"
    return str(value)


def fmt_delta(d: Mapping[str, Any], name: str) -> str:
    if d["delta"] is None:
        return "–"
    sign = "+" if d["delta"] >= 0 else ""
    mark = {True: " ▲", False: " ▼", None: ""}[d["better"]]
    return (f"{sign}{d['delta']:.0f}" if name.endswith("_ms") else f"{sign}{d['delta']:.3f}") + mark


def _cell(text: Any, limit: int = 90) -> str:
    text = " ".join(str(text or "").split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


# ---------------------------------------------------------------- report.md


def render_markdown(report: Mapping[str, Any], comparison: Mapping[str, Any] | None = None, charts: Sequence[str] = ()) -> str:
    s, cfg, results = report["summary"], report.get("config", {}), report["results"]
    out = [f"# Evaluation report — {cfg.get('dataset') or 'data set'}", ""]
    out += [
        f"{s['n']} questions ({s['n_answerable']} answerable, {s['n_unanswerable']} unanswerable) on knowledge base "
        f"`{cfg.get('kb')}` (content hash `{cfg.get('kb_hash')}`, {cfg.get('kb_documents')} documents, "
        f"{cfg.get('kb_passages')} passages). Generator `{cfg.get('answer_generator') or cfg.get('generator')}`"
        + (f" model `{cfg.get('answer_model') or cfg.get('model')}`" if cfg.get("answer_model") or cfg.get("model") else "")
        + f", embeddings `{cfg.get('embedding_model')}`, k = {cfg.get('k')}. Run {cfg.get('date')}"
        + (f" at commit `{cfg['git_commit']}`" if cfg.get("git_commit") else "")
        + f" in {cfg.get('duration_s')} s; {s.get('errors', 0)} errors.",
        "",
    ]
    out += [f"![{Path(c).stem}]({c})" for c in charts] + ([""] if charts else [])
    out += ["## Aggregates", ""]
    header = ["metric", "value"] + (["baseline", "delta"] if comparison else [])
    rows = []
    for name, (_hb, label) in METRICS.items():
        row = [label, fmt(s.get(name), name)]
        if comparison:
            d = comparison["deltas"][name]
            row += [fmt(d["baseline"], name), fmt_delta(d, name)]
        rows.append(row)
    out += _table(header, rows)
    out.append(f"False refusals: {s['false_refusals']} of {s['n_answerable']} answerable; false answers: "
               f"{s['false_answers']} of {s['n_unanswerable']} unanswerable; {s['citations_shown']} citations shown.")
    out.append("")
    for key, slices in s.get("slices", {}).items():
        out += [f"## By {key}", ""]
        out += _table([key, "n"] + SLICE_COLUMNS, [[v, agg["n"]] + [fmt(agg.get(c), c) for c in SLICE_COLUMNS] for v, agg in slices.items()])
    if comparison:
        out += _render_comparison(comparison)
    failures = [r for r in results if not r["correct"]]
    out += [f"## Failures ({len(failures)})", ""]
    out += _table(["id", "question", "why", "answer"], [[r["id"], _cell(r["question"], 70), _cell(r.get("diagnosis"), 90), _cell(r["answer"], 120)] for r in failures])
    out += ["## Per question", ""]
    rows = [
        [r["id"], r.get("type") or "", r.get("lang") or "", "✓" if r["correct"] else "✗", r["outcome"], fmt(r.get("hit")), fmt(r.get("rr")),
         f"{r['citations_valid']}/{r['citations_total']}", fmt(r.get("citation_correct")), fmt(r.get("latency_ms"), "_ms"),
         _cell(r["question"], 60), _cell(r["answer"], 100)]
        for r in results
    ]
    out += _table(["id", "type", "lang", "ok", "outcome", "hit", "RR", "valid cit.", "cit. ⊆ gold", "ms", "question", "answer"], rows)
    return "\n".join(out)


def _render_comparison(comparison: Mapping[str, Any]) -> list[str]:
    out = ["## Compared with the baseline", ""]
    if comparison["config_changes"]:
        out += _table(["setting", "baseline", "current"], [[k, _cell(v["baseline"]), _cell(v["current"])] for k, v in comparison["config_changes"].items()])
    flipped = comparison["flipped"]
    fixed = sum(f["now"] == "fixed" for f in flipped)
    out += [f"{len(flipped)} questions flipped: {fixed} fixed, {len(flipped) - fixed} broken.", ""]
    if flipped:
        out += _table(["id", "now", "question", "diagnosis"], [[f["id"], f["now"], _cell(f["question"], 70), _cell(f["diagnosis"], 90)] for f in flipped])
    if comparison["added"] or comparison["removed"]:
        out += [f"Questions added: {', '.join(comparison['added']) or '–'}; removed: {', '.join(comparison['removed']) or '–'}.", ""]
    return out


# ---------------------------------------------------------------- charts


def write_charts(report: Mapping[str, Any], out_dir: Path, baseline: Mapping[str, Any] | None = None) -> list[str]:
    """metrics.png, slices.png, latency.png in `out_dir`; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    summary = report["summary"]
    shown = [m for m in RATE_METRICS if summary.get(m) is not None]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(shown) + 1.2))
    y = range(len(shown))
    if baseline:
        ax.barh([i + 0.2 for i in y], [baseline["summary"].get(m) or 0 for m in shown], height=0.4, color="#bbbbbb", label="baseline")
        ax.barh([i - 0.2 for i in y], [summary[m] for m in shown], height=0.4, color="#3b75af", label="current")
        ax.legend(loc="lower right")
    else:
        bars = ax.barh(list(y), [summary[m] for m in shown], color="#3b75af")
        ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_yticks(list(y), [METRICS[m][1] for m in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_title(f"Evaluation metrics (n = {summary['n']})")
    fig.tight_layout()
    fig.savefig(out_dir / "metrics.png", dpi=110)
    plt.close(fig)
    names.append("metrics.png")

    slices = summary.get("slices", {})
    if slices:
        cols = ["accuracy", "refusal_accuracy", "hit_at_k", "citation_validity"]
        widest = max(len(v) for v in slices.values())
        fig, axes = plt.subplots(len(slices), 1, figsize=(max(6.0, 1.0 * widest + 2), 3.3 * len(slices)), squeeze=False)
        for ax, (key, groups) in zip(axes[:, 0], slices.items()):
            labels = list(groups)
            width = 0.8 / len(cols)
            for j, col in enumerate(cols):
                xs = [i + (j - (len(cols) - 1) / 2) * width for i in range(len(labels))]
                ax.bar(xs, [groups[g].get(col) or 0 for g in labels], width=width, label=METRICS[col][1])
            ax.set_xticks(range(len(labels)), [f"{g}\n(n={groups[g]['n']})" for g in labels], fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"by {key}")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(cols), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))
        fig.savefig(out_dir / "slices.png", dpi=110)
        plt.close(fig)
        names.append("slices.png")

    latencies = [r["latency_ms"] for r in report["results"] if r.get("latency_ms") is not None]
    if latencies:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(latencies, bins=min(30, max(5, len(latencies) // 3)), color="#3b75af")
        for p, style in (("latency_p50_ms", "--"), ("latency_p95_ms", ":")):
            if summary.get(p) is not None:
                ax.axvline(summary[p], color="black", linestyle=style, label=f"{p[8:11]} {summary[p]:.0f} ms")
        ax.set_xlabel("latency per question (ms)")
        ax.set_ylabel("questions")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "latency.png", dpi=110)
        plt.close(fig)
        names.append("latency.png")
    return names


def write_report(report: Mapping[str, Any], out_dir: str | Path, baseline: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """report.md and the charts next to report.json; returns the baseline comparison when given."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison = compare(report, baseline) if baseline else None
    charts = write_charts(report, out_dir, baseline)
    (out_dir / "report.md").write_text(render_markdown(report, comparison, charts) + "\n", encoding="utf-8")
    return comparison
