"""Cold start of the `assistant` command (issue 13): what a command imports, and the quick exit after a
successful command — every answer printed in full through a pipe, nothing an ingest wrote lost.

Behaviour only (which modules get imported, what is printed, what a new process reads back); the timings
are in benchmarks/bench_answer.py (part 5)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import KNOWLEDGE, ROOT

QUESTION = "Combien de pays ont signé la déclaration ?"
# what `assistant --help` must not pay for: the settings (pydantic), the store, LangChain, the terminal UI
HEAVY = ("pydantic", "pydantic_settings", "chromadb", "langchain_core", "langsmith", "numpy", "rich")


def _env(data: Path | None = None, **extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **extra}
    env.pop("PYTHONUNBUFFERED", None)  # stdout to a pipe block-buffered, as for a user: the quick exit must flush
    if data is not None:
        env["ASSISTANT_DATA_DIR"] = str(data)
    return env


def _cli(*args: str, data: Path, **extra: str) -> subprocess.CompletedProcess:
    """The `assistant` command as a real process, its output a pipe."""
    exe = shutil.which("assistant", path=os.path.dirname(sys.executable))
    cmd = [exe] if exe else [sys.executable, "-m", "assistant.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=_env(data, **extra), cwd=ROOT,
                          timeout=300)


def _python(code: str, data: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=_env(data, **extra), cwd=ROOT, timeout=300)


# ---------------------------------------------------------------- what gets imported
def test_help_and_parser_import_nothing_heavy():
    got = _python(f"""
        import sys
        from assistant.cli import build_parser
        build_parser().format_help()
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "[]"


def test_help_still_lists_every_command(tmp_path):
    got = _cli("--help", data=tmp_path / "data")
    assert got.returncode == 0, got.stderr
    for command in ("ingest", "search", "kb", "config", "ask", "chat", "eval", "serve", "llm"):
        assert command in got.stdout


def test_a_question_does_not_load_langsmith_api_models(indexed_settings):
    """LangChain's runnables import LangSmith's run trees; LangSmith's ~300 generated API models
    (`langsmith.types`) stay unloaded until something reads them — then they are all there."""
    got = _python(f"""
        import sys
        from assistant.cli import main
        assert main(["ask", {QUESTION!r}, "--json"], quick_exit=False) == 0
        print("loaded before:", "langsmith.types.run" in sys.modules)
        from langsmith.types import Run, RunSelectField
        import langsmith.types as types
        print("loaded after:", "langsmith.types.run" in sys.modules, Run.__name__, "Rule" in dir(types))
    """, data=indexed_settings.data_dir)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.strip().splitlines()
    assert lines[-2] == "loaded before: False"
    assert lines[-1] == "loaded after: True Run True"


def _make_package(root: Path, init: str) -> None:
    pkg = root / "lazydemo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(init, encoding="utf-8")
    (pkg / "leaf.py").write_text("VALUE = 'leaf'\n", encoding="utf-8")


def test_lazy_package_runs_its_init_on_first_attribute_only(tmp_path):
    _make_package(tmp_path, "import os\nos.environ['LAZYDEMO_RAN'] = str(int(os.environ.get('LAZYDEMO_RAN', 0)) + 1)\n"
                            "from .leaf import VALUE as VALUE\nNAME = 'init'\n")
    got = _python(f"""
        import os, sys, threading
        sys.path.insert(0, {str(tmp_path)!r})
        from assistant.lazy import lazy_package
        assert lazy_package("lazydemo")
        from lazydemo.leaf import VALUE          # a submodule: the package's __init__ does not run
        print(VALUE, os.environ.get("LAZYDEMO_RAN"))
        import lazydemo
        names = []
        threads = [threading.Thread(target=lambda: names.append(lazydemo.NAME)) for _ in range(8)]
        [t.start() for t in threads]; [t.join() for t in threads]
        print(names == ["init"] * 8, os.environ["LAZYDEMO_RAN"], lazydemo.VALUE)
        try:
            lazydemo.missing
        except AttributeError as exc:
            print("AttributeError", "missing" in str(exc))
        print(lazy_package("lazydemo"))          # already imported: left alone
    """)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split("\n")[:4] == ["leaf None", "True 1 leaf", "AttributeError True", "False"]


def test_lazy_package_that_fails_raises_and_retries(tmp_path):
    _make_package(tmp_path, "import os\nif not os.environ.get('LAZYDEMO_OK'):\n    raise RuntimeError('broken init')\n"
                            "NAME = 'init'\n")
    got = _python(f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from assistant.lazy import lazy_package
        lazy_package("lazydemo")
        import lazydemo
        try:
            lazydemo.NAME
        except RuntimeError as exc:
            print("raised", exc)
        os.environ["LAZYDEMO_OK"] = "1"
        print(lazydemo.NAME)
    """)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ["raised broken init", "init"]


# ---------------------------------------------------------------- the quick exit
def test_ask_through_a_pipe_prints_the_whole_answer(indexed_settings):
    """The quick exit flushes first: through a pipe (block-buffered stdout) the answer, every source and
    quote are there, exactly as the in-process command prints them."""
    data = indexed_settings.data_dir
    got = _cli("ask", QUESTION, data=data)
    assert got.returncode == 0, got.stderr
    reference = _python(f"""
        from assistant.cli import main
        raise SystemExit(main(["ask", {QUESTION!r}], quick_exit=False))
    """, data=data)
    assert reference.returncode == 0, reference.stderr
    assert got.stdout == reference.stdout
    answer = json.loads(_cli("ask", QUESTION, "--json", data=data).stdout)
    assert answer["citations"] and "Sources" in got.stdout
    for c in answer["citations"]:
        assert f"[{c['number']}]" in got.stdout and c["source"] in got.stdout


def test_long_json_output_through_a_pipe_is_complete(indexed_settings):
    """More than a pipe's buffer (64 kB): the process may only end once the reader has it all."""
    got = _cli("ask", QUESTION, "--json", "-k", "10", data=indexed_settings.data_dir)
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)  # a cut-off document would not parse
    assert answer["citations"] and len(answer["passages"]) == 10


def test_plain_prints_through_a_pipe_are_complete(indexed_settings):
    """Commands that print with print() (no terminal library flushing for them) lose nothing either."""
    got = _cli("config", data=indexed_settings.data_dir)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0].startswith("data_dir = ") and lines[-1].startswith("generator (resolved) = ")
    docs = _cli("kb", "docs", "--json", data=indexed_settings.data_dir)
    assert {d["source"] for d in json.loads(docs.stdout)} == {p.name for p in KNOWLEDGE.glob("*.txt")}


_FINALIZER = """
import os, sys
class _Teardown:
    def __del__(self):
        os.write(2, b"<interpreter teardown>")
_keep = _Teardown()
import atexit
atexit.register(lambda: os.write(2, b"<atexit>"))
from assistant.cli import main
sys.exit(main())
"""


def test_success_skips_the_teardown_failure_does_not(indexed_settings, tmp_path):
    """A successful command ends without the interpreter's teardown but still runs the exit handlers;
    a failing one exits the ordinary way; an in-process call (tests, other programs) never exits."""
    ok = subprocess.run([sys.executable, "-c", _FINALIZER, "ask", QUESTION], capture_output=True, text=True,
                        env=_env(indexed_settings.data_dir), cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "<atexit>" in ok.stderr and "<interpreter teardown>" not in ok.stderr
    assert "Sources" in ok.stdout
    failed = subprocess.run([sys.executable, "-c", _FINALIZER, "ask", "   "], capture_output=True, text=True,
                            env=_env(indexed_settings.data_dir), cwd=ROOT, timeout=300)
    assert failed.returncode == 1
    assert "<atexit>" in failed.stderr and "<interpreter teardown>" in failed.stderr
    inproc = _python("""
        from assistant.cli import main
        code = main(["config"])  # argv given: a library call, it returns
        print("returned", code)
    """, data=tmp_path / "data")
    assert inproc.returncode == 0 and inproc.stdout.strip().endswith("returned 0")


def _big_document(path: Path, passages: int) -> None:
    """A document of about `passages` passages (distinct sentences, so distinct vectors)."""
    paragraphs = []
    for i in range(passages):
        words = " ".join(f"mot{(i * 7 + j * 13) % 997}x{i}" for j in range(12))
        paragraphs.append(f"Paragraphe {i} : le comité numéro {i} a examiné {words}. " * 4)
    path.write_text("Rapport annexe\n\n" + "\n\n".join(paragraphs), encoding="utf-8")


def test_ingest_then_read_from_new_processes_loses_nothing(tmp_path):
    """Each `assistant ingest` ends with the quick exit; every following process reads back what it wrote:
    the document records, the vectors (more than Chroma's 1,000-record HNSW sync threshold), the lexical
    index — and an unchanged re-ingest finds nothing to do."""
    docs, data = tmp_path / "docs", tmp_path / "data"
    shutil.copytree(KNOWLEDGE, docs)
    _big_document(docs / "annexe.txt", 800)
    env = {"ASSISTANT_EMBEDDINGS": "hashing"}

    first = _cli("ingest", str(docs), "--json", data=data, **env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert len(report["added"]) == 3 and report["chunks"] > 1000, report["skipped"]

    listed = json.loads(_cli("kb", "docs", "--json", data=data, **env).stdout)
    assert {d["source"] for d in listed} == {p.name for p in KNOWLEDGE.glob("*.txt")} | {"annexe.txt"}
    assert sum(d["chunks"] for d in listed) == report["chunks"] and all(d["complete"] for d in listed)

    # every passage's own vector finds it first, in a new process (dense side complete)
    check = _python("""
        import random
        from assistant.config import Settings
        from assistant.embeddings import get_embedder
        from assistant.indexing import open_store
        settings = Settings()
        store = open_store(settings, create=False)
        rows = store.all_passages()
        embedder = get_embedder(settings)
        sample = random.Random(0).sample(rows, 40)
        vectors = embedder.embed_passages([text for _, text, _ in sample])
        misses = [pid for (pid, _, _), v in zip(sample, vectors) if store.query(v, 1)[0][0] != pid]
        print(store.count(), len(misses))
    """, data=data, **env)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == [str(report["chunks"]), "0"]

    # the lexical side: a word only the last paragraph has
    last = 799
    hits = json.loads(_cli("search", f"mot{(last * 7) % 997}x{last}", "-k", "1", "--json", data=data, **env).stdout)
    assert hits and hits[0]["source"] == "annexe.txt" and hits[0]["lexical_rank"] == 1

    again = json.loads(_cli("ingest", str(docs), "--json", data=data, **env).stdout)
    assert again["embedded"] == 0 and len(again["unchanged"]) == 3

    (docs / "annexe.txt").unlink()
    (docs / "nouveau.txt").write_text("Note\n\nLe zeppelin vermillon survole Lyon.", encoding="utf-8")
    third = json.loads(_cli("ingest", str(docs), "--json", data=data, **env).stdout)
    assert third["added"] == ["nouveau.txt"] and third["removed"] == ["annexe.txt"]
    hits = json.loads(_cli("search", "zeppelin vermillon", "-k", "3", "--json", data=data, **env).stdout)
    assert hits[0]["source"] == "nouveau.txt" and all(h["source"] != "annexe.txt" for h in hits)
    assert json.loads(_cli("kb", "docs", "--json", data=data, **env).stdout).__len__() == 3
