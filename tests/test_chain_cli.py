"""`assistant ask` and `assistant chat` (assistant/answer_cli.py) through the real command entry point."""
from __future__ import annotations

import io
import json

import pytest

from assistant.cli import main
from assistant.models import Answer


@pytest.fixture
def env(indexed_settings, monkeypatch):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(indexed_settings.data_dir))
    monkeypatch.setenv("ASSISTANT_GENERATOR", "extractive")
    monkeypatch.setenv("COLUMNS", "200")


def test_ask_json_is_exactly_the_answer_object(env, capsys):
    assert main(["ask", "Combien de pays ont signé la déclaration ?", "--json"]) == 0
    out = capsys.readouterr().out
    answer = Answer.model_validate_json(out)
    assert out.strip() == answer.model_dump_json(indent=2)
    assert answer.conflicts and answer.citations and not answer.declined
    assert {"text", "citations", "declined", "conflicts", "passages", "timings"} <= json.loads(out).keys()


def test_ask_k_sets_the_passages(env, capsys):
    assert main(["ask", "Qui est Keir Starmer ?", "--json", "-k", "3"]) == 0
    assert len(Answer.model_validate_json(capsys.readouterr().out).passages) == 3


def test_ask_readable_output_marks_sources_conflicts_and_declines(env, capsys):
    assert main(["ask", "Combien de pays ont signé la déclaration ?"]) == 0
    out = capsys.readouterr().out
    assert "The sources disagree" in out and "Sources" in out
    assert "sommet-ia-paris-declaration.txt" in out and "chine-rejette-critiques-vance.txt" in out
    assert "[1]" in out and "[2]" in out
    assert main(["ask", "Who won the 2024 Nobel Prize in Physics?"]) == 0
    assert "Not in the sources" in capsys.readouterr().out


def test_ask_errors_go_to_stderr_with_exit_code_1(env, capsys):
    assert main(["ask", "   "]) == 1
    captured = capsys.readouterr()
    assert "empty" in captured.err and captured.out == ""
    assert main(["ask", "Qui est Keir Starmer ?", "--kb", "nope"]) == 1
    assert "nope" in capsys.readouterr().err


def test_chat_keeps_the_history_and_resets(env, capsys, monkeypatch):
    lines = "Combien de pays ont signé la déclaration ?\nEt les États-Unis, l'ont-ils signée ?\n/new\n\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert main(["chat"]) == 0
    out = capsys.readouterr().out
    assert "understood as: Les États-Unis, l'ont-ils signée ? (pays ont signé la déclaration)" in out
    assert "New conversation." in out
