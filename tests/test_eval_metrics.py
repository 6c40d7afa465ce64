"""The evaluation metrics and the data-set loader on hand-made cases (no model, no index)."""
from __future__ import annotations

import json

import pytest

from assistant.evaluation import metrics as m
from assistant.evaluation.dataset import DatasetError, EvalItem, load_dataset, load_items


# ---------------------------------------------------------------- normalisation and must_include


def test_fold_case_accents_spaces_and_punctuation():
    assert m.fold("  Les  ÉTATS-Unis\u00a0et la Chine ") == "les etats unis et la chine"
    assert m.fold("Ouïghours") == "ouighours"
    assert m.fold("l’IA « ouverte »") == m.fold("l'IA \"ouverte\"")


def test_contains_respects_number_and_word_edges():
    assert m.contains("61 pays, dont la Chine", "61")
    assert not m.contains("161 pays", "61")
    assert not m.contains("618 pays", "61")
    assert m.contains("la Conférence mondiale 2025qui se déroulera", "2025")  # glued words of the source
    assert not m.contains("plus de 100 pays", "US")
    assert m.contains("Zhang GuoqingVice-premier ministre", "Zhang Guoqing")  # a word may run on
    assert m.contains("les vice-premiers", "vice premier")
    assert not m.contains("anything", "")


def test_must_include_groups_all_required_any_alternative():
    answer = "Cinquante-huit pays selon une source [2], 61 selon l'autre [1]."
    ok, missing = m.must_include(answer, [["61", "soixante et un"], ["58", "cinquante-huit"]])
    assert ok and missing == []
    ok, missing = m.must_include("Soixante et un pays ont signé.", [["61", "soixante et un"], ["58", "cinquante-huit"]])
    assert not ok and missing == [["58", "cinquante-huit"]]


def test_must_include_ignores_citation_markers_and_empty_groups():
    assert m.must_include("La déclaration [1].", [["1"]]) == (False, [["1"]])
    assert m.must_include("La déclaration [1, 2].", [["2"]])[0] is False
    assert m.must_include("Peu importe.", []) == (True, [])
    assert m.must_include("Les ÉTATS-UNIS ont refusé", [["etats unis"]])[0]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "answerable, declined, outcome, correct_if_content_ok",
    [(True, False, "answered", True), (True, True, "false_refusal", False),
     (False, True, "declined", True), (False, False, "false_answer", False)],
)
def test_refusal_outcomes(answerable, declined, outcome, correct_if_content_ok):
    assert m.refusal_outcome(answerable, declined) == outcome
    assert m.is_correct(answerable, declined, content_ok=True) is correct_if_content_ok


def test_answered_without_the_expected_content_is_wrong():
    assert m.is_correct(True, False, content_ok=False) is False
    assert m.is_correct(False, True, content_ok=False) is True  # content is irrelevant when declining


# ---------------------------------------------------------------- retrieval


def test_hit_recall_mrr():
    ranked = ["b.txt", "a.txt", "b.txt", "c.txt"]
    assert m.hit_at_k(ranked, ["a.txt"], 1) == 0.0
    assert m.hit_at_k(ranked, ["a.txt"], 2) == 1.0
    assert m.recall_at_k(ranked, ["a.txt", "c.txt"], 3) == 0.5
    assert m.recall_at_k(ranked, ["a.txt", "c.txt"], 4) == 1.0
    assert m.reciprocal_rank(ranked, ["a.txt"]) == 0.5
    assert m.reciprocal_rank(ranked, ["c.txt"], k=3) == 0.0
    assert m.reciprocal_rank(ranked, ["b.txt", "a.txt"]) == 1.0
    assert m.hit_at_k(ranked, [], 5) is None and m.reciprocal_rank(ranked, []) is None


def test_sources_match_by_file_name_when_a_folder_is_given():
    assert m.hit_at_k(["docs/a.txt"], ["a.txt"], 1) == 1.0
    assert m.hit_at_k(["a.txt.bak"], ["a.txt"], 1) == 0.0


# ---------------------------------------------------------------- citations


def test_quote_in_passage_folds_and_handles_ellipsis():
    passage = "Cinquante-huit pays, dont la Chine, la France et l'Inde, ont signé une déclaration commune."
    assert m.quote_in_passage("cinquante huit pays, dont la chine", passage)
    assert m.quote_in_passage("« Cinquante-huit pays … ont signé une déclaration »", passage)
    assert not m.quote_in_passage("soixante et un pays", passage)
    assert not m.quote_in_passage("", passage)


def test_citation_validity_and_correctness():
    cits = [{"quote": "61 pays", "passage_text": "Au total, 61 pays ont signé."},
            {"quote": "58 pays", "passage_text": "Au total, 61 pays ont signé."}]
    assert m.citation_validity(cits) == (1, 2)
    assert m.citations_correct(["a.txt", "b.txt"], ["a.txt", "b.txt", "c.txt"]) is True
    assert m.citations_correct(["a.txt", "x.txt"], ["a.txt"]) is False
    assert m.citations_correct([], ["a.txt"]) is None


# ---------------------------------------------------------------- aggregation and slicing


def _row(id, lang, type, answerable, declined, correct, hit=None, rr=None, valid=0, total=0, ms=100.0):
    return {"id": id, "lang": lang, "type": type, "answerable": answerable, "declined": declined,
            "outcome": m.refusal_outcome(answerable, declined), "correct": correct, "hit": hit, "recall": hit,
            "rr": rr, "citations_valid": valid, "citations_total": total, "citation_correct": None,
            "context_hit": None, "latency_ms": ms, "missing": []}


def test_percentile_linear_interpolation():
    assert m.percentile([], 50) is None
    assert m.percentile([5], 95) == 5
    assert m.percentile([1, 2, 3, 4], 50) == 2.5
    assert m.percentile(range(1, 101), 95) == pytest.approx(95.05)


def test_aggregate_and_slices():
    rows = [
        _row("a", "fr", "factual", True, False, True, hit=1.0, rr=1.0, valid=2, total=2, ms=100),
        _row("b", "fr", "factual", True, True, False, hit=1.0, rr=0.5, ms=300),
        _row("c", "en", "unanswerable", False, True, True, ms=50),
        _row("d", "en", "unanswerable", False, False, False, valid=0, total=1, ms=70),
    ]
    s = m.aggregate(rows)
    assert s["n"] == 4 and s["n_answerable"] == 2
    assert s["accuracy"] == 0.5 and s["answer_accuracy"] == 0.5
    assert s["refusal_accuracy"] == 0.5
    assert s["false_refusals"] == 1 and s["false_refusal_rate"] == 0.5
    assert s["false_answers"] == 1 and s["false_answer_rate"] == 0.5
    assert s["hit_at_k"] == 1.0 and s["mrr"] == 0.75  # unanswerable rows (None) are skipped
    assert s["citation_validity"] == pytest.approx(2 / 3)  # micro: 2 of 3 shown citations
    assert s["latency_p50_ms"] == 85
    slices = m.slice_results(rows, "lang")
    assert set(slices) == {"en", "fr"}
    assert slices["fr"]["accuracy"] == 0.5 and slices["en"]["false_answers"] == 1
    assert slices["en"]["hit_at_k"] is None
    assert set(m.slice_results(rows, "type")) == {"factual", "unanswerable"}


def test_check_thresholds():
    summary = {"accuracy": 0.8, "hit_at_k": None, "latency_p95_ms": 900.0}
    assert m.check_thresholds(summary, {"accuracy": 0.8}) == []
    failures = m.check_thresholds(summary, {"accuracy": 0.9, "hit_at_k": 0.5}, {"latency_p95_ms": 500})
    assert len(failures) == 3 and failures[0].startswith("accuracy: 0.800 < required 0.9")


def test_diagnose_names_the_cause():
    row = _row("x", "fr", "factual", True, False, False)
    row.update(missing=[["61", "soixante et un"]], context_hit=False)
    assert m.diagnose(row).startswith("retrieval miss")
    row["context_hit"] = True
    assert "answer lacks 61|soixante et un" in m.diagnose(row)
    assert m.diagnose(_row("y", "fr", "factual", False, False, False)) == "answered although unanswerable"


# ---------------------------------------------------------------- data set


def test_dataset_accepts_the_issue_example_and_bare_strings():
    line = json.dumps({"id": "q01", "question": "Combien de pays ont signé la déclaration ?",
                       "must_include": [["61", "soixante et un"], "58"], "sources": ["a.txt"],
                       "answerable": True, "lang": "fr", "history": ["Qu'est-ce que le sommet ?"], "type": "conflict"})
    (item,) = load_items([line, ""])
    assert isinstance(item, EvalItem)
    assert item.must_include == [["61", "soixante et un"], ["58"]]
    assert item.history == ["Qu'est-ce que le sommet ?"]


def test_dataset_errors_name_every_bad_line():
    lines = [
        json.dumps({"id": "a", "question": "ok ?"}),
        "{not json",
        json.dumps({"id": "b", "question": "  "}),
        json.dumps({"id": "a", "question": "dup ?"}),
        json.dumps({"id": "c", "question": "typo ?", "must_inlcude": []}),
        json.dumps({"id": "d", "question": "x ?", "answerable": False, "must_include": [["y"]]}),
        json.dumps({"id": "e", "question": "x ?", "must_include": [[]]}),
    ]
    with pytest.raises(DatasetError) as exc:
        load_items(lines, name="set.jsonl")
    text = str(exc.value)
    for lineno in range(2, 8):
        assert f"set.jsonl:{lineno}:" in text
    assert "set.jsonl:1:" not in text
    assert "invalid JSON" in text and "duplicate id 'a'" in text and "must_inlcude" in text


def test_gold_set_is_valid_and_covers_the_issue(tmp_path):
    from pathlib import Path

    items = load_dataset(Path(__file__).resolve().parent.parent / "evals" / "paris_summit.jsonl")
    assert len(items) >= 40
    types = {i.type for i in items}
    assert {"factual", "number", "date", "person", "conflict", "multi-doc", "follow-up", "unanswerable", "injection"} <= types
    assert sum(not i.answerable for i in items) >= 8
    assert {i.lang for i in items} == {"fr", "en"}
    conflict = next(i for i in items if i.question == "Combien de pays ont signé la déclaration ?")
    assert conflict.type == "conflict" and [["61", "soixante et un"], ["58", "cinquante-huit"]] == conflict.must_include
    assert any(i.history for i in items)
    with pytest.raises(DatasetError):
        load_dataset(tmp_path / "missing.jsonl")
