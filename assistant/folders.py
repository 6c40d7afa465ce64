"""A knowledge base's folders: where its documents live, where uploads go, which files the app may touch.

`default` indexes the shipped knowledge/ folder (read-only: the checkout stays clean) and an uploads
folder in the data directory; another knowledge base indexes the folder recorded at its first ingest
(`kb.json`), else its own `documents/` folder, which is also where its uploads go.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from assistant import documents
from assistant.config import Settings
from assistant.store import StoreError, check_kb_name


def _kb_file(settings: Settings, kb: str) -> Path:
    return settings.kb_dir(kb) / "kb.json"


def source_dir_of(settings: Settings, kb: str | None = None) -> Path:
    """Where a knowledge base's documents live: recorded at ingest, else knowledge/ for `default`,
    else a `documents/` folder in the knowledge base's data directory (used by uploads)."""
    kb = check_kb_name(kb or settings.kb)
    try:
        return Path(json.loads(_kb_file(settings, kb).read_text())["source_dir"])
    except (OSError, ValueError, KeyError):
        pass
    return settings.knowledge_dir if kb == "default" else settings.kb_dir(kb) / "documents"


def upload_dir_of(settings: Settings, kb: str | None = None) -> Path:
    """Where the Library page writes uploads. For `default`, a folder in the data directory: the shipped
    knowledge/ folder is never written (the checkout stays clean); for the others, their documents folder."""
    kb = check_kb_name(kb or settings.kb)
    return settings.kb_dir(kb) / "uploads" if kb == "default" else source_dir_of(settings, kb)


def _same_folder(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def kb_folders(settings: Settings, kb: str | None = None, source_dir: Path | None = None) -> list[Path]:
    """The folders a knowledge base indexes, first one first: its documents folder (`source_dir` when
    given), then its uploads folder when that is another folder. A name found in both is the first's."""
    main = Path(source_dir) if source_dir else source_dir_of(settings, kb)
    uploads = upload_dir_of(settings, kb)
    return [main] if _same_folder(main, uploads) else [main, uploads]


def read_only_dirs(settings: Settings, kb: str | None = None) -> list[Path]:
    """Folders of a knowledge base whose files the app never writes nor deletes (knowledge/ for `default`)."""
    return kb_folders(settings, kb)[:-1]


def document_file(settings: Settings, kb: str | None, source: str) -> tuple[Path, Path] | None:
    """(path, folder) of a document's file, looked up as ingest does (first folder first), or None. Never a
    symbolic link nor a path outside the folder (`source` comes from the index: it is not trusted)."""
    for folder in kb_folders(settings, kb):
        path = folder / source
        if path.is_file() and not path.is_symlink() and documents.inside(path, folder):
            return path, folder
    return None


class ReadOnlyDocument(StoreError):
    """A document of a folder the app never modifies (the shipped knowledge/ of `default`)."""


def delete_refusal(settings: Settings, source: str, kb: str | None = None) -> str | None:
    """Why the app will not delete this document's file, or None when it may."""
    found = document_file(settings, kb, source)
    if found and any(_same_folder(found[1], ro) for ro in read_only_dirs(settings, kb)):
        return (f"{source} is shipped with the application in {found[1]}: it is read-only here "
                "(only uploaded documents can be deleted)")
    return None


def remember_source_dir(settings: Settings, kb: str, folder: Path) -> None:
    path = _kb_file(settings, kb)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"source_dir": str(folder.resolve())}))


# The folders of a knowledge base's data dir that hold documents (uploads): the user's files, not
# index state. Everything else there (lexical/, kb.json) is derived and goes with the index.
DOCUMENT_FOLDERS = ("documents", "uploads")


@dataclass
class KbDocuments:
    """Where a knowledge base's documents are, as `delete_kb` treats them."""

    owned: list[Path]  # app-owned: its uploads folder(s) inside the data dir; removed only on request
    outside: list[Path]  # folders of the user's (knowledge/, a folder given to `ingest`): never removed


def kb_documents(settings: Settings, kb: str) -> KbDocuments:
    kb = check_kb_name(kb)
    home = settings.kb_dir(kb)
    owned = [home / name for name in DOCUMENT_FOLDERS if (home / name).is_dir() or (home / name).is_symlink()]
    outside = [f for f in kb_folders(settings, kb)
               if f.is_dir() and not any(f.resolve() == o.resolve() for o in owned if not o.is_symlink())]
    return KbDocuments(owned=owned, outside=outside)
