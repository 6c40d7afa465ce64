"""Evals: the reports of `assistant eval` — headline metrics, charts per metric and per slice, the
per-question table, and the comparison of two runs. A button can start a new run."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import streamlit as st

from assistant.config import PROJECT_ROOT
from ui import evals_data as ed
from ui import state

settings = state.session_settings()
st.title("Evals")

extra = st.sidebar.text_input("Extra reports folder", value=st.session_state.get("eval_dir", ""), key="_eval_dir",
                              help=f"Also list report.json files from this folder (or set {ed.ENV_DIR})",
                              on_change=lambda: st.session_state.__setitem__("eval_dir", st.session_state["_eval_dir"]))
dirs = ed.report_dirs(extra)
refs = ed.find_reports(dirs)


def run_eval(dataset: Path, limit: int | None) -> None:
    """`assistant eval` in a subprocess, with its progress; the new report is listed afterwards."""
    out = ed.DEFAULT_DIR / f"ui-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [sys.executable, "-m", "assistant.cli", "eval", "run", str(dataset), "--out", str(out), "--kb", settings.kb]
    cmd += ["--limit", str(limit)] if limit else []
    env = {**os.environ, "LANGSMITH_TRACING_V2": "false"}  # the configured top-k: runs stay comparable
    with st.status(f"Evaluating {dataset.name} on {settings.kb}…", expanded=True) as status:
        bar = st.progress(0.0, text="Starting…")
        try:
            proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            status.update(label=f"Could not start the run: {exc.strerror or exc}", state="error")
            return
        tail = b""
        while chunk := proc.stderr.read1(4096):
            tail = (tail + chunk)[-4000:]
            found = re.findall(rb"(\d+)/(\d+)", tail)
            if found:
                done, total = (int(x) for x in found[-1])
                bar.progress(min(1.0, done / max(total, 1)), text=f"{done}/{total} questions")
        stdout = proc.stdout.read().decode(errors="replace")
        code = proc.wait()
        if (out / "report.json").is_file():
            status.update(label=f"Report written to {out.relative_to(PROJECT_ROOT)}"
                          + (" (some thresholds failed)" if code == 1 else ""), state="complete")
            st.session_state["eval_pick"] = str((out / "report.json").resolve())
        else:
            lines = [ln for ln in (tail.decode(errors="replace") + "\n" + stdout).splitlines() if ln.strip()]
            status.update(label=f"The run failed (exit code {code})", state="error")
            st.code("\n".join(lines[-8:]) or "no output", language=None)


with st.expander("Run an evaluation", expanded=not refs, icon=":material/play_arrow:"):
    datasets = sorted((PROJECT_ROOT / "evals").glob("*.jsonl"))
    if not datasets:
        st.caption("No data set found in evals/*.jsonl.")
    else:
        col1, col2, col3 = st.columns([3, 1, 1], vertical_alignment="bottom")
        dataset = col1.selectbox("Data set", datasets, format_func=lambda p: p.name)
        limit = col2.number_input("Questions (0 = all)", min_value=0, value=0, step=5)
        if col3.button("Start run", width="stretch"):
            run_eval(dataset, int(limit) or None)
            refs = ed.find_reports(dirs)

if not refs:
    st.info(
        "No evaluation report yet. Run **`make eval`** in a terminal (it writes `evals/reports/latest/report.json`), "
        "or start a run above. Reports are looked for in: " + ", ".join(f"`{d}`" for d in dirs),
        icon=":material/info:",
    )
    st.stop()

by_path = {str(r.path.resolve()): r for r in refs}
paths = list(by_path)
pick = st.session_state.get("eval_pick")
col1, col2 = st.columns(2)
current_path = col1.selectbox("Report", paths, index=paths.index(pick) if pick in paths else 0,
                              format_func=lambda p: by_path[p].label)
others = [p for p in paths if p != current_path]
base_path = col2.selectbox("Compare with", [None, *others], format_func=lambda p: "—" if p is None else by_path[p].label)

try:
    report = ed.load_report(Path(current_path))
    baseline = ed.load_report(Path(base_path)) if base_path else None
except ValueError as exc:
    st.error(str(exc))
    st.stop()

s, cfg = report["summary"], report["config"]
b = baseline["summary"] if baseline else None
generator = cfg.get("answer_generator") or cfg.get("generator") or "?"
model = cfg.get("answer_model") or cfg.get("model")
st.caption(
    f"{s.get('n', len(report['results']))} questions ({s.get('n_answerable', '?')} answerable, "
    f"{s.get('n_unanswerable', '?')} unanswerable) · data set `{Path(str(cfg.get('dataset') or '?')).name}` · "
    f"kb `{cfg.get('kb', '?')}` · generator `{generator}`" + (f" · model `{model}`" if model else "")
    + f" · k = {cfg.get('k', '?')} · {cfg.get('date', '')} · {s.get('errors', 0)} errors"
)

# --- headline metrics ------------------------------------------------------------------------------------
cols = [c for _ in range(2) for c in st.columns(4)]
for col, (name, (label, higher)) in zip(cols, ed.HEADLINE.items()):
    value, old = s.get(name), (b or {}).get(name)
    delta = None if value is None or old is None else value - old
    if delta is not None and abs(delta) < 1e-9:
        col.metric(label, ed.fmt(value, name), delta="no change", delta_color="off", delta_arrow="off", border=True)
    else:
        col.metric(label, ed.fmt(value, name), delta=None if delta is None else ed.fmt(delta, name),
                   delta_color="normal" if higher else "inverse", border=True)

# --- charts --------------------------------------------------------------------------------------------------
st.subheader("Metrics")
frame = ed.metrics_frame(s, b)
if frame.empty:
    st.caption("No rate metric in this report.")
else:
    colors = [ed.COLORS.get(c, "#64748b") for c in frame.columns]
    st.bar_chart(frame, horizontal=True, stack=False, sort=False, x_label="score (0–1)", height=380, color=colors)
slices = [k for k in (s.get("slices") or {}) if (s["slices"][k] or {})]
if slices:
    st.subheader("By slice")
    for col, key in zip(st.columns(len(slices)), slices):
        col.markdown(f"**By {dict(lang='language', type='question type').get(key, key)}**")
        sliced = ed.slice_frame(s, key)
        if sliced.empty or not len(sliced.columns):
            col.caption("No per-slice metric in this report.")
        else:
            col.bar_chart(sliced, horizontal=True, stack=False, sort=False, height=80 + 60 * len(sliced),
                          color=[ed.COLORS.get(c, "#64748b") for c in sliced.columns])

# --- comparison ------------------------------------------------------------------------------------------------
if baseline:
    st.subheader("Compared with " + by_path[base_path].name)
    changes = ed.flipped(report, baseline)
    fixed = int((changes["now"] == "fixed").sum())
    st.markdown(f"**{len(changes)}** questions changed: **{fixed}** fixed, **{len(changes) - fixed}** broken.")
    if not changes.empty:
        st.dataframe(changes, hide_index=True, width="stretch")

# --- per question ------------------------------------------------------------------------------------------------
st.subheader("Questions")
table = ed.questions_frame(report["results"])
if st.checkbox("Only the failures", key="eval_failures"):
    table = table[~table["ok"]]
st.dataframe(
    table, hide_index=True, width="stretch",
    column_config={
        "ok": st.column_config.CheckboxColumn("ok", width="small"),
        "question": st.column_config.TextColumn("question", width="medium"),
        "answer": st.column_config.TextColumn("answer", width="large"),
        "citations": st.column_config.TextColumn("citations", width="medium"),
        "latency (ms)": st.column_config.NumberColumn("latency (ms)", format="%.0f"),
    },
)
