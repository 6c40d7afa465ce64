"""`assistant eval`: run a data set (the CI gate), import SQuAD-format sets.

    assistant eval run DATASET.jsonl [--kb NAME] [--out DIR] [--baseline OLD/report.json] [--k N]
                       [--min-accuracy X] [--min-refusal X] [--min-hit X] [--min-citation-validity X] …
    assistant eval DATASET.jsonl …            (same as `run`: a first argument that is not an action)
    assistant eval import-squad FILE --out DIR [--articles N] [--seed S] [--max-questions N] [--lang fr]
    assistant eval import-nomiracl DIR --out DIR [--queries N] [--seed S]   (refusal benchmark)

Exit codes: 0 all thresholds met, 1 a threshold failed (each failure is printed), 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `assistant --help` registers this command without pydantic
    from assistant.config import Settings

ACTIONS = ("run", "import-squad", "import-nomiracl")

# flag -> (summary metric, "min" or "max")
THRESHOLDS = {
    "min_accuracy": ("accuracy", "min"),
    "min_answer_accuracy": ("answer_accuracy", "min"),
    "min_refusal": ("refusal_accuracy", "min"),
    "min_hit": ("hit_at_k", "min"),
    "min_recall": ("recall_at_k", "min"),
    "min_mrr": ("mrr", "min"),
    "min_citation_validity": ("citation_validity", "min"),
    "min_citation_correctness": ("citation_correctness", "min"),
    "min_follow_up_detection": ("follow_up_detection", "min"),
    "max_false_refusal": ("false_refusal_rate", "max"),
    "max_false_answer": ("false_answer_rate", "max"),
    "max_p95_ms": ("latency_p95_ms", "max"),
}


class _EvalParser(argparse.ArgumentParser):
    """Treats `assistant eval DATASET.jsonl …` as `assistant eval run DATASET.jsonl …`."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if args and args[0] not in ACTIONS and not args[0].startswith("-"):
            args.insert(0, "run")
        return super().parse_known_args(args, namespace)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate answers on a data set (accuracy, refusals, retrieval, citations, latency)",
        description="Evaluate the assistant on a JSONL data set, or import a SQuAD-format set. "
        "`assistant eval DATASET.jsonl` is short for `assistant eval run DATASET.jsonl`.",
    )
    p.__class__ = _EvalParser
    p.set_defaults(func=lambda args, settings: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="eval_action", metavar="{run,import-squad,import-nomiracl}", parser_class=argparse.ArgumentParser)

    r = sub.add_parser("run", help="ask every question and write report.json, report.md and charts")
    r.add_argument("dataset", type=Path, help="JSONL data set (see evals/paris_summit.jsonl)")
    r.add_argument("--kb", help="knowledge base to ask (default: ASSISTANT_KB)")
    r.add_argument("--ingest", type=Path, metavar="DIR", help="ingest this folder into --kb first (incremental)")
    r.add_argument("--out", type=Path, help="output folder (default: evals/reports/<dataset>-<kb>)")
    r.add_argument("--baseline", type=Path, metavar="REPORT", help="earlier report.json (or its folder) to compare with")
    r.add_argument("--k", type=int, help="passages retrieved and cut-off of hit@k/recall@k/MRR (default: top_k setting)")
    r.add_argument("--limit", type=int, help="only the first N questions")
    r.add_argument("--only", nargs="+", metavar="ID", help="only these question ids")
    r.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    gate = r.add_argument_group("thresholds (CI gate: exit 1 when one fails)")
    for flag, (metric, kind) in THRESHOLDS.items():
        gate.add_argument("--" + flag.replace("_", "-"), type=float, metavar="X",
                          help=f"{'minimum' if kind == 'min' else 'maximum'} {metric}")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("import-squad", help="SQuAD-format JSON (v1.1/v2.0) -> documents folder + dataset.jsonl")
    i.add_argument("file", type=Path)
    i.add_argument("--out", type=Path, required=True, help="writes OUT/docs/*.txt and OUT/dataset.jsonl")
    i.add_argument("--articles", type=int, help="sample N articles (default: all)")
    i.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    i.add_argument("--max-questions", type=int, help="at most N questions per article")
    i.add_argument("--lang", help="language tag for the questions and documents (e.g. fr, en)")
    i.add_argument("--kb", help="also ingest the documents into this knowledge base")
    i.set_defaults(func=cmd_import_squad)

    n = sub.add_parser("import-nomiracl", help="NoMIRACL folder (queries.jsonl, corpus.jsonl) -> documents + refusal data set")
    n.add_argument("folder", type=Path)
    n.add_argument("--out", type=Path, required=True)
    n.add_argument("--queries", type=int, help="sample N queries, half from each subset (default: all)")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--lang", default="fr")
    n.add_argument("--kb", help="also ingest the documents into this knowledge base")
    n.set_defaults(func=cmd_import_nomiracl)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(highlight=False, stderr=stderr, soft_wrap=stderr)


def _thresholds(args) -> tuple[dict[str, float], dict[str, float]]:
    minimums, maximums = {}, {}
    for flag, (metric, kind) in THRESHOLDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            (minimums if kind == "min" else maximums)[metric] = value
    return minimums, maximums


def print_summary(report: dict, comparison: dict | None, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from assistant.evaluation.metrics import METRICS
    from assistant.evaluation.report import fmt, fmt_delta

    s, cfg = report["summary"], report["config"]
    table = Table(title=escape(f"{cfg.get('dataset')} on kb {cfg.get('kb')!r} ({s['n']} questions, k={cfg.get('k')})"))
    table.add_column("metric")
    table.add_column("value", justify="right")
    if comparison:
        table.add_column("baseline", justify="right")
        table.add_column("delta", justify="right")
    for name, (_hb, label) in METRICS.items():
        row = [label, fmt(s.get(name), name)]
        if comparison:
            d = comparison["deltas"][name]
            row += [fmt(d["baseline"], name), fmt_delta(d, name)]
        table.add_row(*row)
    console.print(table)
    for key, slices in s.get("slices", {}).items():
        parts = [f"{v} {fmt(a['accuracy'])} (n={a['n']})" for v, a in slices.items()]
        console.print(escape(f"accuracy by {key}: " + ", ".join(parts)))
    if comparison and comparison["flipped"]:
        for f in comparison["flipped"]:
            console.print(f"  [{'green' if f['now'] == 'fixed' else 'red'}]{f['now']}[/] {escape(f['id'])}: {escape(f['question'])}")


def cmd_run(args, settings: Settings) -> int:
    from assistant.evaluation import report as report_mod
    from assistant.evaluation import runner
    from assistant.evaluation.dataset import DatasetError, load_dataset
    from assistant.evaluation.metrics import check_thresholds

    from rich.markup import escape

    console, err = _console(), _console(stderr=True)
    if args.k is not None and not 1 <= args.k <= 50:
        err.print("[red]error:[/] --k must be between 1 and 50")
        return 2
    if args.ingest and not args.kb:
        err.print("[red]error:[/] --ingest needs an explicit --kb (ingesting replaces that knowledge base's documents)")
        return 2
    try:
        items = load_dataset(args.dataset)
        baseline = runner.load_report(args.baseline) if args.baseline else None
    except (DatasetError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    if args.only:
        wanted = set(args.only)
        items = [it for it in items if it.id in wanted]
    if args.limit:
        items = items[: args.limit]
    if not items:
        err.print("[red]error:[/] no question selected")
        return 2
    kb = args.kb or settings.kb
    note = runner.prepare_kb(settings, kb, args.ingest)
    if note:
        err.print(f"[dim]{escape(note)}[/]")

    from tqdm import tqdm

    with tqdm(total=len(items), unit="q", desc="eval", disable=args.quiet or args.json, file=sys.stderr) as bar:
        def progress(done: int, total: int, qid: str) -> None:
            bar.set_postfix_str(qid)
            bar.update(1)

        report = runner.run(items, settings, kb=kb, k=args.k, dataset=args.dataset, progress=progress)

    out = args.out or Path("evals/reports") / f"{args.dataset.stem}-{kb}"
    runner.write_json(report, out)
    if args.no_charts:
        comparison = report_mod.compare(report, baseline) if baseline else None
        (Path(out) / "report.md").write_text(report_mod.render_markdown(report, comparison) + "\n", encoding="utf-8")
    else:
        comparison = report_mod.write_report(report, out, baseline)
    if comparison:
        (Path(out) / "comparison.json").write_text(json.dumps(comparison, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    minimums, maximums = _thresholds(args)
    failures = check_thresholds(report["summary"], minimums, maximums)
    if args.json:
        print(json.dumps({"summary": report["summary"], "failures": failures, "out": str(out)}, ensure_ascii=False, indent=2))
    else:
        print_summary(report, comparison, console)
        console.print(escape(f"report: {out}/report.md"))
    if failures:
        err.print("[red bold]thresholds failed:[/]")
        for f in failures:
            err.print(f"  - {escape(f)}")
        return 1
    if minimums or maximums:
        err.print(f"[green]all {len(minimums) + len(maximums)} thresholds met[/]")
    return 0


def cmd_import_squad(args, settings: Settings) -> int:
    from assistant.evaluation.importers import import_squad

    return _imported(args, settings, lambda: import_squad(args.file, args.out, articles=args.articles, seed=args.seed,
                                                          max_questions=args.max_questions, lang=args.lang))


def cmd_import_nomiracl(args, settings: Settings) -> int:
    from assistant.evaluation.importers import import_nomiracl

    return _imported(args, settings, lambda: import_nomiracl(args.folder, args.out, queries=args.queries, seed=args.seed, lang=args.lang))


def _imported(args, settings: Settings, do_import) -> int:
    from assistant.evaluation.dataset import DatasetError

    try:
        rep = do_import()
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{rep.articles} articles ({rep.paragraphs} paragraphs) -> {rep.docs_dir}; {rep.questions} questions "
          f"({rep.unanswerable} unanswerable) -> {rep.dataset}" + (f"; {len(rep.skipped)} skipped without answer" if rep.skipped else ""))
    if args.kb:
        from assistant.indexing import ingest

        ing = ingest(settings, source_dir=rep.docs_dir, kb=args.kb)
        print(f"ingested into {args.kb!r}: {ing.chunks} passages ({ing.embedded} embedded)")
        print(f"next: assistant eval run {rep.dataset} --kb {args.kb}")
    else:
        print(f"next: assistant eval run {rep.dataset} --kb NAME --ingest {rep.docs_dir}")
    return 0
