"""Offline evaluation: gold data sets, metrics that need no LLM, reports, baseline comparison, CI gate.

- `dataset`   loads and validates JSONL question sets (`EvalItem`).
- `metrics`   pure functions: normalisation, must_include, refusals, retrieval, citations, aggregation.
- `runner`    asks every item through the chat chain and writes `report.json`.
- `report`    `report.md`, PNG charts and the comparison with a baseline report.
- `importers` turns SQuAD-format files into a knowledge-base folder plus a data set.
- `cli`       the `assistant eval` sub-command.
"""
