"""One writer per knowledge base: ingests and deletions of one knowledge base never interleave.

A thread lock in this process, an flock for the other processes using the same data dir on this machine
(CLI, UI, API workers). Re-entrant in a thread (the API holds it around an upload and the ingest that
follows). It does not reach processes with another data dir, e.g. on other machines sharing a Chroma
server (README).
"""
from __future__ import annotations

import fcntl
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from assistant.config import Settings
from assistant.store import check_kb_name

_KB_LOCKS: dict[str, list] = {}  # lock file -> [RLock, depth, open file]
_KB_LOCKS_GUARD = threading.Lock()


def kb_lock_path(settings: Settings, kb: str) -> Path:
    """The lock file of a knowledge base: beside, not inside, its folder (deleting a knowledge base
    leaves it, so a process waiting on it and a newcomer lock the same file)."""
    return settings.data_dir / "locks" / f"{check_kb_name(kb)}.lock"


@contextmanager
def kb_write_lock(settings: Settings, kb: str, waiting: Callable[[str], None] | None = None):
    """Hold the knowledge base's write lock; when another process holds it, `waiting` gets a message
    (once) and this one waits for it."""
    path = kb_lock_path(settings, kb)
    with _KB_LOCKS_GUARD:
        entry = _KB_LOCKS.setdefault(str(path), [threading.RLock(), 0, None])
    entry[0].acquire()
    try:
        if entry[1] == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting:
                    waiting(f"waiting for another ingest or deletion of knowledge base {kb!r} to finish "
                            f"(lock {path})…")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                except BaseException:
                    fh.close()
                    raise
            entry[2] = fh
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                fh, entry[2] = entry[2], None
                fcntl.flock(fh, fcntl.LOCK_UN)
                fh.close()
    finally:
        entry[0].release()
