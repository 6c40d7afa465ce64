"""Knowledge-base administration that loses nothing: deleting a knowledge base keeps the user's documents
(and says where), two ingests of one knowledge base never interleave, listing knowledge bases reads no
passage, and a contradictory LLM configuration is refused at start.

Real processes (the `assistant` console script, `assistant serve`), a real embedded Chroma and a real
`chroma run` on loopback; the hashing embedder keeps it fast.
"""
from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from assistant.config import ConfigError, Settings
from assistant.catalog import kb_summaries, kb_summary, list_documents
from assistant.indexing import delete_document, ingest, open_store
from assistant.kb_lock import kb_write_lock
from assistant.store import VectorStore, list_kbs
from conftest import KNOWLEDGE, ROOT
from test_cli import run

HASHING = {"ASSISTANT_EMBEDDINGS": "hashing"}
TEXT = "Le phare de Kerbrat a été allumé en 1887. Sa lanterne porte à trente-deux kilomètres.\n"


def _docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    shutil.copytree(KNOWLEDGE, folder, ignore=shutil.ignore_patterns("README*", "LICENSE*"))
    return folder


# --- 1. deleting a knowledge base keeps the documents ------------------------------------------------------
def test_kb_delete_keeps_the_uploads_of_a_kb_made_in_the_app_and_says_where(tmp_path):
    data = tmp_path / "data"
    uploads = data / "kbs" / "mine" / "documents"  # where the Library page puts a new knowledge base's files
    uploads.mkdir(parents=True)
    (uploads / "phare.txt").write_text(TEXT, encoding="utf-8")
    assert run("ingest", "--kb", "mine", env=HASHING, data=data).returncode == 0

    deleted = run("kb", "delete", "mine", "--yes", env=HASHING, data=data)
    assert deleted.returncode == 0, deleted.stderr
    assert (uploads / "phare.txt").read_text(encoding="utf-8") == TEXT
    assert f"kept: {uploads}" in deleted.stdout and "assistant ingest --kb mine" in deleted.stdout
    assert json.loads(run("kb", "list", "--json", env=HASHING, data=data).stdout) == []
    assert not (data / "kbs" / "mine" / "lexical").exists()  # the index state went
    again = run("ingest", "--kb", "mine", "--json", env=HASHING, data=data)  # as the message says
    assert json.loads(again.stdout)["added"] == ["phare.txt"]

    # deleting the uploaded files needs saying so, and a confirmation
    unconfirmed = run("kb", "delete", "mine", "--delete-uploads", env=HASHING, data=data)  # no terminal, no --yes
    assert unconfirmed.returncode == 2 and "add --yes" in unconfirmed.stderr
    assert (uploads / "phare.txt").exists() and "mine" in json.loads(run("kb", "list", "--json", data=data).stdout)
    gone = run("kb", "delete", "mine", "--delete-uploads", "--yes", env=HASHING, data=data)
    assert gone.returncode == 0, gone.stderr
    assert "1 uploaded file(s)" in gone.stdout and "are deleted" in gone.stdout
    assert not uploads.exists()


def test_kb_delete_never_touches_a_folder_given_to_ingest(tmp_path):
    data, docs = tmp_path / "data", _docs(tmp_path)
    before = sorted(p.name for p in docs.iterdir())
    assert run("ingest", str(docs), "--kb", "theirs", env=HASHING, data=data).returncode == 0
    deleted = run("kb", "delete", "theirs", "--yes", "--delete-uploads", env=HASHING, data=data)
    assert deleted.returncode == 0, deleted.stderr
    assert sorted(p.name for p in docs.iterdir()) == before
    assert f"kept: {docs}" in deleted.stdout and f"assistant ingest {docs} --kb theirs" in deleted.stdout
    assert "deleted" not in deleted.stdout.replace("Deleted knowledge base", "")


def _answer_prompt(args: list[str], data: Path, answer: str) -> tuple[int, str]:
    """Run `assistant …` with a terminal as stdin, answer its prompt; (return code, everything printed)."""
    master, slave = pty.openpty()
    env = {**os.environ, **HASHING, "ASSISTANT_DATA_DIR": str(data)}
    exe = shutil.which("assistant", path=os.path.dirname(sys.executable))
    proc = subprocess.Popen([exe, *args], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    os.close(slave)
    try:
        os.write(master, (answer + "\n").encode())
        out, _ = proc.communicate(timeout=300)
    finally:
        os.close(master)
    return proc.returncode, out


def test_the_confirmation_prompt_says_what_is_deleted_and_what_is_kept(tmp_path):
    data = tmp_path / "data"
    uploads = data / "kbs" / "mine" / "documents"
    uploads.mkdir(parents=True)
    (uploads / "phare.txt").write_text(TEXT, encoding="utf-8")
    assert run("ingest", "--kb", "mine", env=HASHING, data=data).returncode == 0

    code, out = _answer_prompt(["kb", "delete", "mine"], data, "n")
    assert code == 1
    assert f"Its index is removed; the documents in {uploads} are kept. [y/N]" in out
    assert "mine" in json.loads(run("kb", "list", "--json", data=data).stdout)

    code, out = _answer_prompt(["kb", "delete", "mine", "--delete-uploads"], data, "y")
    assert code == 0, out
    assert f"Its index is removed, and the 1 uploaded file(s) in {uploads} are deleted. [y/N]" in out
    assert not uploads.exists() and "mine" not in json.loads(run("kb", "list", "--json", data=data).stdout)


# --- 2. one ingest of a knowledge base at a time -----------------------------------------------------------
def _stderr_lines(proc: subprocess.Popen) -> tuple[list[str], threading.Event]:
    """The lines a process writes to stderr, collected by a thread; the event is set on the waiting message."""
    lines, waiting = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "waiting for another ingest" in line:
                waiting.set()

    threading.Thread(target=read, daemon=True).start()
    return lines, waiting


def test_ingests_of_one_kb_wait_for_each_other_and_never_interleave(tmp_path):
    data, docs = tmp_path / "data", _docs(tmp_path)
    settings = Settings(data_dir=data, embeddings="hashing")
    exe = shutil.which("assistant", path=os.path.dirname(sys.executable))
    env = {**os.environ, **HASHING, "ASSISTANT_DATA_DIR": str(data)}
    with kb_write_lock(settings, "mine"):  # this process writes to "mine": two CLIs start an ingest of it
        procs = [subprocess.Popen([exe, "ingest", str(docs), "--kb", "mine", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        readers = [_stderr_lines(p) for p in procs]
        for lines, waiting in readers:
            assert waiting.wait(120), "".join(lines)
        assert "knowledge base 'mine'" in "".join(readers[0][0])
        assert all(p.poll() is None for p in procs)  # both wait…
        assert json.loads(run("kb", "list", "--json", data=data).stdout) == []  # …and neither has written anything
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, "".join(readers[procs.index(proc)][0])
        reports.append(json.loads(out))
    # one after the other: the first indexed both documents, the second found them up to date
    names = sorted(p.name for p in docs.glob("*.txt"))
    assert sorted((r["added"], r["unchanged"]) for r in reports) == [([], names), (names, [])]
    summary = kb_summary(settings, "mine")
    docs_listed = list_documents(settings, "mine")
    assert summary.documents == len(docs_listed) == 2
    assert summary.passages == sum(d.chunks for d in docs_listed) == reports[0]["chunks"] == reports[1]["chunks"]


def test_a_delete_waits_for_the_ingest_in_progress(tmp_path):
    data, docs = tmp_path / "data", _docs(tmp_path)
    settings = Settings(data_dir=data, embeddings="hashing")
    ingest(settings, docs, kb="mine")
    exe = shutil.which("assistant", path=os.path.dirname(sys.executable))
    env = {**os.environ, **HASHING, "ASSISTANT_DATA_DIR": str(data)}
    script = ("import sys; from assistant.config import Settings; from assistant.kb_lock import kb_write_lock\n"
              f"with kb_write_lock(Settings(data_dir={str(data)!r}), 'mine'):\n"
              "    print('held', flush=True); sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = threading.Event()
        thread = threading.Thread(target=lambda: (delete_document(settings, "sommet-ia-paris-declaration.txt",
                                                                  "mine", remove_file=False), done.set()))
        thread.start()
        assert not done.wait(2)  # held by the other process: the delete has not happened
        assert "sommet-ia-paris-declaration.txt" in {d.source for d in list_documents(settings, "mine")}
        holder.stdin.write("\n")
        holder.stdin.flush()
        thread.join(120)
        assert done.is_set()
    finally:
        holder.kill() if holder.poll() is None else None
        holder.wait(10)
    assert {d.source for d in list_documents(settings, "mine")} == {"chine-rejette-critiques-vance.txt"}
    assert run("ingest", str(docs), "--kb", "mine", "--json", env=HASHING, data=data).returncode == 0
    assert kb_summary(settings, "mine").documents == 2


# --- 3. listing knowledge bases reads records, not passages --------------------------------------------------
class CountingStore(VectorStore):
    """A real store that counts the calls reading passages (texts or metadata)."""

    reads: list[str] = []

    def _pages(self, include):
        CountingStore.reads.append(f"pages{include}")
        return super()._pages(include)

    def get(self, ids):
        CountingStore.reads.append("get")
        return super().get(ids)

    def sample_texts(self, n):
        CountingStore.reads.append("sample")
        return super().sample_texts(n)


def _counting(settings: Settings, kb: str) -> CountingStore:
    base = open_store(settings, kb, create=False)
    return CountingStore(settings, kb, base.model, base.dim, create=False)


def test_kb_counts_come_from_the_records_and_stay_right(tmp_path):
    settings, docs = Settings(data_dir=tmp_path / "data", embeddings="hashing"), _docs(tmp_path)
    ingest(settings, docs, kb="mine")
    (docs / "phare.txt").write_text(TEXT, encoding="utf-8")
    ingest(settings, docs, kb="mine")
    delete_document(settings, "chine-rejette-critiques-vance.txt", "mine")

    CountingStore.reads = []
    summary = kb_summary(settings, "mine", store=_counting(settings, "mine"))
    assert CountingStore.reads == []  # no passage read, not even a page of metadata
    listed = list_documents(settings, "mine")
    assert {d.source for d in listed} == {"sommet-ia-paris-declaration.txt", "phare.txt"}
    assert (summary.documents, summary.passages) == (2, sum(d.chunks for d in listed))
    assert summary.passages == open_store(settings, "mine").count()
    assert [(s.name, s.documents) for s in kb_summaries(settings)] == [("mine", 2)]


def test_kb_list_in_server_mode_reads_no_passage_on_a_fresh_data_dir(chroma_server, tmp_path):
    """Another machine (a fresh data dir) lists a shared server's knowledge bases from the records alone:
    its own lexical index of that knowledge base is not built (that would read every passage)."""
    host, port, _ = chroma_server
    writer = Settings(data_dir=tmp_path / "data-a", chroma_host=host, chroma_port=port, embeddings="hashing")
    report = ingest(writer, _docs(tmp_path), kb="listing")
    fresh = tmp_path / "data-b"
    env = {**HASHING, "CHROMA_HOST": host, "CHROMA_PORT": str(port)}
    listed = run("kb", "list", env=env, data=fresh)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"listing: 2 documents, {report.chunks} passages", listed.stdout), listed.stdout
    assert not (fresh / "kbs" / "listing" / "lexical").exists()


# --- the HTTP API: the same lock, the same counts ----------------------------------------------------------
@pytest.fixture
def api(chroma_server, tmp_path):
    from test_api import start_server

    host, port, _ = chroma_server
    knowledge = _docs(tmp_path)
    data = tmp_path / "api-data"
    server = start_server(data, knowledge, tmp_path / "api.log", CHROMA_HOST=host, CHROMA_PORT=str(port),
                          **HASHING)
    try:
        yield server, Settings(data_dir=data, chroma_host=host, chroma_port=port, embeddings="hashing")
    finally:
        server.stop()


def test_api_lists_counts_from_records_and_its_upload_ingest_waits_for_the_lock(api, tmp_path):
    server, settings = api
    other = Settings(data_dir=tmp_path / "elsewhere", chroma_host=settings.chroma_host,
                     chroma_port=settings.chroma_port, embeddings="hashing")
    report = ingest(other, _docs(tmp_path / "x"), kb="apilisting")  # written by another machine
    with httpx.Client(base_url=server.url, timeout=60) as http:
        kbs = {k["name"]: k for k in http.get("/v1/kbs").json()}
        assert (kbs["apilisting"]["documents"], kbs["apilisting"]["passages"]) == (2, report.chunks)
        assert not (settings.kb_dir("apilisting") / "lexical").exists()  # no passage was read for it

        with kb_write_lock(settings, "apiupload"):  # e.g. `assistant ingest --kb apiupload` on this data dir
            sent = http.post("/v1/kbs/apiupload/documents", files={"files": ("phare.txt", TEXT.encode(), "text/plain")})
            assert sent.status_code == 202, sent.text
            job_id = sent.json()["job"]["id"]
            deadline = time.monotonic() + 120
            while "waiting for another ingest" not in str((job := http.get(f"/v1/jobs/{job_id}").json())["progress"]):
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
            assert job["status"] == "queued" and "apiupload" not in list_kbs(settings)
        while job["status"] not in ("done", "failed"):
            assert time.monotonic() < deadline + 120, job
            time.sleep(0.1)
            job = http.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "done", job
        kbs = {k["name"]: k for k in http.get("/v1/kbs").json()}
        assert kbs["apiupload"]["documents"] == 1


# --- 4. one LLM endpoint --------------------------------------------------------------------------------
def test_local_model_and_base_url_together_are_refused_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match="unset OPENAI_BASE_URL .* or unset ASSISTANT_LOCAL_MODEL"):
        Settings(data_dir=tmp_path, local_model=tmp_path / "m.gguf", openai_base_url="http://127.0.0.1:9/v1")
    # the extractive generator uses neither: nothing to choose
    Settings(data_dir=tmp_path, local_model=tmp_path / "m.gguf", openai_base_url="http://127.0.0.1:9/v1",
             generator="extractive")
    env = {"ASSISTANT_LOCAL_MODEL": str(tmp_path / "m.gguf"), "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
           "OPENAI_API_KEY": "sk-never-shown-4242"}
    for args in (["config"], ["ask", "Qui est Keir Starmer ?"]):
        out = run(*args, env=env, data=tmp_path / "data")
        assert out.returncode == 2
        assert "error: invalid configuration: ASSISTANT_LOCAL_MODEL" in out.stderr and "Traceback" not in out.stderr
        assert "sk-never-shown-4242" not in out.stderr + out.stdout


def test_the_app_refuses_both_at_start(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSISTANT_LOCAL_MODEL", str(tmp_path / "m.gguf"))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    errors = re.sub(r"\\(.)", r"\1", " ".join(e.value for e in at.error))
    assert "ASSISTANT_LOCAL_MODEL" in errors and "unset OPENAI_BASE_URL" in errors
