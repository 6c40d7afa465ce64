"""What the HTTP routes call: warm assistants per knowledge base, searches, uploads and ingest jobs.

One `Service` per server process. It keeps one `Assistant` per knowledge base, opened once under a lock
(the index, the BM25 index, the embedding model and the generator loaded before the first request
uses them) and then shared by the request threads: answering keeps its state per call, the retriever
reloads its BM25 index by itself when an ingest rewrote it (here, in another worker or from the CLI).

Writes (ingest, delete) of one knowledge base are serialised, in this process by a lock and across
processes on this data dir (`--workers N`, the CLI, the UI) by a file lock (`assistant.kb_lock.kb_write_lock`);
readers are never blocked by them. Ingest runs in a
background thread; its job record is a JSON file under the data dir, so any worker can report it.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

from assistant.chain import Assistant, safe_message
from assistant.config import Settings
from assistant.models import Answer, ScoredPassage, Turn
from assistant.store import KnowledgeBaseMissing, StoreError, check_kb_name

log = logging.getLogger(__name__)
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class ApiError(Exception):
    """A failure with its HTTP status, OpenAI error type and code; the message is safe to show."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def not_found_kb(kb: str, known: Sequence[str]) -> ApiError:
    names = ", ".join(known) or "none yet"
    return ApiError(404, f"knowledge base {kb!r} does not exist (knowledge bases: {names})", code="model_not_found",
                    param="model")


# Answer.error_kind -> (status, OpenAI error type, code)
_KIND_STATUS = {
    "invalid": (400, "invalid_request_error", "invalid_question"),
    "too_long": (413, "invalid_request_error", "question_too_long"),
    "not_found": (404, "invalid_request_error", "model_not_found"),
    "unavailable": (503, "service_unavailable", "unavailable"),
    "internal": (500, "server_error", "internal_error"),
}


def answer_error(answer: Answer) -> ApiError:
    status, type_, code = _KIND_STATUS.get(answer.error_kind or "internal", _KIND_STATUS["internal"])
    return ApiError(status, answer.error or "internal error", type_, code)


JOB_RETENTION_S = 7 * 24 * 3600  # finished job records older than this are removed when a new job starts


class Jobs:
    """Ingest jobs as JSON files (`<data_dir>/api/jobs/<id>.json`), readable from every worker."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._lock = threading.Lock()

    def create(self, kb: str, **fields) -> dict:
        self._prune()
        job = {"id": uuid.uuid4().hex, "kind": "ingest", "kb": kb, "status": "queued",
               "progress": {"done": 0, "total": None, "current": None}, "created": time.time(),
               "started": None, "finished": None, "report": None, "error": None, "pid": os.getpid(), **fields}
        self._write(job)
        return job

    def get(self, job_id: str) -> dict | None:
        if not _JOB_ID.match(job_id or ""):
            return None
        try:
            job = json.loads((self.folder / f"{job_id}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if job.get("status") in ("queued", "running") and not _alive(job.get("pid")):
            job.update(status="failed", error="the server stopped during this ingest: upload again or run "
                       "`assistant ingest` (it repairs a partial one)")
        return job

    def _prune(self) -> None:
        cutoff = time.time() - JOB_RETENTION_S
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    def update(self, job: dict, **fields) -> dict:
        with self._lock:
            job.update(fields)
            self._write(job)
        return job

    def _write(self, job: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{job['id']}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(job, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, path)


class Service:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.jobs = Jobs(settings.data_dir / "api" / "jobs")
        self._assistants: dict[str, Assistant] = {}
        self._open_lock = threading.Lock()
        self._save_locks: dict[str, threading.Lock] = {}
        self._threads: list[threading.Thread] = []

    # --- knowledge bases
    def kbs(self) -> list[str]:
        from assistant.store import list_kbs

        return list_kbs(self.settings)

    def kb_summaries(self) -> list[dict]:
        """Every knowledge base with its document and passage counts, from the per-document records
        (no passage is read: the cost is one record per document)."""
        from assistant.catalog import kb_summaries

        try:
            return [asdict(s) for s in kb_summaries(self.settings)]
        except StoreError as exc:
            raise _store_error(exc, self.settings) from None

    def _check_kb(self, kb: str) -> str:
        try:
            return check_kb_name(kb)
        except StoreError:
            raise not_found_kb(kb, self.kbs()) from None

    def assistant(self, kb: str) -> Assistant:
        """The warm assistant of a knowledge base (404 when it does not exist, 503 when the store is down).

        Checked on every request at the cost of one stat: when the knowledge base was written since
        (an ingest anywhere rewrites its BM25 index), the collection is looked up once more, and a
        collection dropped or rebuilt under the assistant gets a fresh one."""
        from assistant.indexing import index_version

        kb = self._check_kb(kb)
        version = index_version(self.settings, kb)
        entry = self._assistants.get(kb)
        if entry is not None and entry[1] == version:
            return entry[0]
        with self._open_lock:
            entry = self._assistants.get(kb)
            if entry is not None and entry[1] != version:
                if self._same_collection(entry[0], kb):
                    entry = (entry[0], version)
                    self._assistants[kb] = entry
                else:
                    entry = None
            if entry is None:
                entry = (self._open(kb), version)
                self._assistants[kb] = entry
        return entry[0]

    def _open(self, kb: str) -> Assistant:
        assistant = Assistant(self.settings, kb=kb)
        try:
            assistant.retriever  # noqa: B018 — opened here, once, not by racing request threads
        except KnowledgeBaseMissing:
            raise not_found_kb(kb, self.kbs()) from None
        except StoreError as exc:
            raise _store_error(exc, self.settings) from None
        assistant.generator  # noqa: B018
        assistant.warm_up()
        return assistant

    def _same_collection(self, assistant: Assistant, kb: str) -> bool:
        from assistant.indexing import open_store

        try:
            return open_store(self.settings, kb, create=False).collection_id == assistant.retriever.store.collection_id
        except KnowledgeBaseMissing:
            raise not_found_kb(kb, self.kbs()) from None
        except StoreError as exc:
            raise _store_error(exc, self.settings) from None

    def warm(self) -> None:
        """Load the embedding model and the default knowledge base before the first request."""
        from assistant.embeddings import get_embedder

        try:
            get_embedder(self.settings)
            self.assistant(self.settings.kb)
        except Exception as exc:  # noqa: BLE001 — no index yet, store down: requests will say so
            log.warning("could not warm knowledge base %r: %s", self.settings.kb,
                        exc.message if isinstance(exc, ApiError) else safe_message(exc, self.settings))

    # --- answering and searching
    def ask(self, kb: str, question: str, history: Sequence[Turn]) -> Answer:
        return self.assistant(kb).ask(question, history)

    def search(self, kb: str, query: str, k: int) -> list[ScoredPassage]:
        retriever = self.assistant(kb).retriever
        try:
            return retriever.search(query, k=k)
        except StoreError as exc:
            raise _store_error(exc, self.settings) from None

    # --- documents
    def documents(self, kb: str) -> list[dict]:
        from assistant.catalog import list_documents

        kb = self._check_kb(kb)
        try:
            return [asdict(d) for d in list_documents(self.settings, kb)]
        except KnowledgeBaseMissing:
            raise not_found_kb(kb, self.kbs()) from None
        except StoreError as exc:
            raise _store_error(exc, self.settings) from None

    def upload(self, kb: str, files: list[tuple[str, bytes]], replace: bool) -> tuple[list[dict], dict | None]:
        """Save the files that pass the Library page's rules, then index the folder in the background.
        Returns the per-file results and the ingest job (None when nothing was written)."""
        from assistant.folders import read_only_dirs, source_dir_of, upload_dir_of
        from assistant.library import save_upload

        try:
            kb = check_kb_name(kb)
        except StoreError as exc:
            raise ApiError(400, str(exc), param="kb") from None
        folder = source_dir_of(self.settings, kb)
        # the Library page's rules: uploads of `default` go to the data directory (knowledge/ is read-only)
        uploads, read_only = upload_dir_of(self.settings, kb), read_only_dirs(self.settings, kb)
        # saving is atomic (a new file renamed over the name): it need not wait for an ingest in progress,
        # here or in another process (the job below waits for it); uploads in this process go one at a time
        with self._open_lock:
            saving = self._save_locks.setdefault(kb, threading.Lock())
        with saving:
            results = [save_upload(uploads, name, data, self.settings.max_upload_mb, replace,
                                   read_only=read_only, settings=self.settings) for name, data in files]
        rows = [{"name": r.name, "ok": r.ok, "message": r.message, "changed": r.changed} for r in results]
        if not any(r.changed for r in results):
            return rows, None
        job = self.jobs.create(kb, files=[r.name for r in results if r.changed])
        self.start_ingest(job, kb, folder)
        return rows, job

    def start_ingest(self, job: dict, kb: str, folder: Path) -> None:
        thread = threading.Thread(target=self._ingest, args=(job, kb, folder), name=f"ingest-{job['id'][:8]}",
                                  daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _ingest(self, job: dict, kb: str, folder: Path) -> None:
        from assistant.indexing import ingest

        def progress(done: int, total: int, name: str) -> None:
            self.jobs.update(job, progress={"done": done, "total": total, "current": name})

        try:
            def waiting(message: str) -> None:
                self.jobs.update(job, progress={**job["progress"], "current": message})

            with self.write_lock(kb, waiting):
                self.jobs.update(job, status="running", started=time.time())
                report = ingest(self.settings, source_dir=folder, kb=kb, progress=progress)
        except Exception as exc:  # noqa: BLE001 — recorded in the job for the client to read
            log.warning("ingest job %s failed: %s", job["id"], safe_message(exc, self.settings))
            self.jobs.update(job, status="failed", finished=time.time(), error=safe_message(exc, self.settings))
            return
        self.jobs.update(job, status="done", finished=time.time(), report=report.__dict__,
                         progress={"done": job["progress"]["total"] or 0, "total": job["progress"]["total"] or 0,
                                   "current": None})

    def delete(self, kb: str, name: str) -> bool:
        from assistant.folders import ReadOnlyDocument
        from assistant.indexing import delete_document

        kb = self._check_kb(kb)
        try:
            with self.write_lock(kb):
                return delete_document(self.settings, name, kb)
        except ReadOnlyDocument as exc:  # a shipped document of knowledge/: never deleted
            raise ApiError(403, str(exc), "permission_error", "read_only_document") from None
        except KnowledgeBaseMissing:
            raise not_found_kb(kb, self.kbs()) from None
        except StoreError as exc:
            raise _store_error(exc, self.settings) from None

    @contextmanager
    def write_lock(self, kb: str, waiting=None) -> Iterator[None]:
        """One writer per knowledge base: the lock `assistant.indexing.ingest` takes too (threads of this
        process, and the other processes on this data dir: workers, the CLI, the UI)."""
        from assistant.kb_lock import kb_write_lock

        with kb_write_lock(self.settings, kb, waiting):
            yield

    def wait_for_jobs(self, timeout: float | None = None) -> None:
        for thread in list(self._threads):
            thread.join(timeout)


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _store_error(exc: StoreError, settings: Settings) -> ApiError:
    return ApiError(503, safe_message(exc, settings), "service_unavailable", "store_unavailable")
