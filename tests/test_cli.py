"""The `assistant` console script, run as a real process."""
import json
import os
import shutil
import subprocess
import sys

from conftest import KNOWLEDGE


def run(*args, env=None, data=None):
    full = {**os.environ, **(env or {})}
    if data:
        full["ASSISTANT_DATA_DIR"] = str(data)
    exe = shutil.which("assistant", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "assistant.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=full, timeout=300)


def test_ingest_search_kb_list_docs_delete(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(KNOWLEDGE, docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    data = tmp_path / "data"
    env = {"ASSISTANT_EMBEDDINGS": "hashing"}

    first = run("ingest", str(docs), "--kb", "mine", env=env, data=data)
    assert first.returncode == 0, first.stderr
    assert "2 added" in first.stdout and "broken.pdf" in first.stdout and "skipped" in first.stdout

    again = run("ingest", str(docs), "--kb", "mine", "--json", env=env, data=data)
    assert json.loads(again.stdout)["embedded"] == 0

    found = run("search", "Keir Starmer", "--kb", "mine", "-k", "2", "--json", env=env, data=data)
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and hits[0]["source"] == "sommet-ia-paris-declaration.txt"
    assert {"chunk_id", "start", "end", "title", "score", "text"} <= set(hits[0])

    listed = run("kb", "list", "--json", env=env, data=data)
    assert json.loads(listed.stdout) == ["mine"]
    documents = json.loads(run("kb", "docs", "--kb", "mine", "--json", env=env, data=data).stdout)
    assert {d["source"] for d in documents} == {p.name for p in KNOWLEDGE.glob("*.txt")}

    deleted = run("kb", "delete", "mine", "--yes", env=env, data=data)
    assert deleted.returncode == 0
    assert json.loads(run("kb", "list", "--json", env=env, data=data).stdout) == []
    assert (docs / "sommet-ia-paris-declaration.txt").exists()


def test_errors_are_one_readable_line(tmp_path):
    missing = run("search", "x", "--kb", "ghost", data=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error: knowledge base 'ghost' does not exist")
    assert "Traceback" not in missing.stderr
    nofolder = run("ingest", str(tmp_path / "nowhere"), data=tmp_path)
    assert nofolder.returncode == 2 and "does not exist" in nofolder.stderr


def test_search_and_ask_print_document_text_literally(tmp_path):
    from test_browser import HOSTILE_QUESTION, hostile_documents

    docs, data = tmp_path / "docs", tmp_path / "data"
    hostile_documents(docs, 9)
    assert run("ingest", str(docs), "--kb", "hostile", data=data).returncode == 0
    literals = ("La pétition [/] du phare", "**bold**", ":warning:", "<b>html</b>", "[/]", ":material/home:",
                "![pixel](http://127.0.0.1:9/pixel.png?leak=conversation)", "[x](http://127.0.0.1:9/link)",
                "rapport [1] du port", ":rocket:")
    for args in (("search", "pétition du phare de Kerbrat", "-k", "2"), ("ask", HOSTILE_QUESTION)):
        done = run(*args, "--kb", "hostile", data=data, env={"ASSISTANT_GENERATOR": "extractive"})
        assert done.returncode == 0, done.stderr
        assert "MarkupError" not in done.stderr and "Traceback" not in done.stderr
        for literal in literals:
            assert literal in done.stdout, (args[0], literal)
        assert "⚠" not in done.stdout.replace("⚠ The sources disagree", "") and "🚀" not in done.stdout
