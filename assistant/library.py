"""Saving an uploaded file into a knowledge base's folder, safely: the rules shared by the Library page
(ui/uploads.py re-exports them) and the HTTP API's upload route. No Streamlit here: easy to test.


A file is written only after every check passed: a safe base name (no path parts, not hidden, not a
name the indexer ignores), a supported type, a size within the limit (MB = 10^6 bytes), content that
`documents.load` can read and that stays within the passage budget, no silent overwrite of another
document, no name or content of a read-only folder (the shipped knowledge/), and no symbolic link in
the way: an upload never writes through a link nor creates one. It lands in the folder atomically
(written to a new hidden temporary file, then renamed over the name), so a refused or failed upload
never touches what is already there.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from assistant import documents

if TYPE_CHECKING:
    from assistant.config import Settings

MAX_NAME_CHARS = 150


@dataclass
class UploadResult:
    name: str  # the (sanitised) file name, or the raw name when it was refused
    ok: bool
    message: str  # why it was refused, or what happened ("added", "replaced", "unchanged")
    path: Path | None = None
    changed: bool = False  # a file was written (the knowledge base needs indexing)


class UploadRefused(ValueError):
    pass


def allowed_types() -> list[str]:
    """Extensions for `st.file_uploader(type=...)`, without the dot."""
    return sorted(s.lstrip(".") for s in documents.SUPPORTED_SUFFIXES)


def safe_name(raw: str) -> str:
    """The base name of an uploaded file, or `UploadRefused` with the reason."""
    name = (raw or "").replace("\\", "/").split("/")[-1].strip()
    if not name or name in {".", ".."}:
        raise UploadRefused("no usable file name")
    if name.startswith("."):
        raise UploadRefused("hidden file names (starting with '.') are not accepted")
    if any(ord(ch) < 32 or ch in '<>:"|?*' for ch in name):
        raise UploadRefused("the file name contains forbidden characters")
    if len(name) > MAX_NAME_CHARS:
        raise UploadRefused(f"the file name is longer than {MAX_NAME_CHARS} characters")
    suffix = Path(name).suffix.lower()
    if suffix not in documents.SUPPORTED_SUFFIXES:
        allowed = ", ".join(sorted(documents.SUPPORTED_SUFFIXES))
        raise UploadRefused(f"unsupported type {suffix or '(no extension)'} (accepted: {allowed})")
    return name


def _check_content(name: str, data: bytes, max_bytes: int) -> documents.Document:
    """Load the bytes exactly as the indexer will, from a private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        if path not in documents.iter_files(Path(tmp)):
            raise UploadRefused("the indexer ignores files with this name (README, LICENSE, metadata…): rename it")
        try:
            return documents.load(path, root=Path(tmp), max_bytes=max_bytes)
        except documents.UnsupportedDocument as exc:
            raise UploadRefused(exc.reason) from exc


def _check_budget(doc: documents.Document, settings: Settings) -> None:
    """Chunk as the indexer will: a document over the passage budget would be skipped by it."""
    from assistant.chunking import chunk_document
    from assistant.indexing import passage_budget_problem

    problem = passage_budget_problem(
        len(chunk_document(doc, settings.chunk_chars, settings.chunk_overlap_sentences)), settings
    )
    if problem:
        raise UploadRefused(problem)


def _same_content(folders: Iterable[Path], digest: str, skip: Path) -> str | None:
    for folder in folders:
        for path in documents.iter_files(folder):  # regular files only: never read through a link
            if path != skip and path.stat().st_size and documents.file_hash(path) == digest:
                return path.relative_to(folder).as_posix()
    return None


def save_upload(
    folder: Path,
    raw_name: str,
    data: bytes,
    max_mb: float,
    replace: bool = False,
    *,
    read_only: Iterable[Path] = (),
    settings: Settings | None = None,
) -> UploadResult:
    """Validate one upload and write it into `folder`; never raises for a bad upload.

    `read_only`: folders of the same knowledge base the upload may neither shadow (same name) nor
    duplicate (same content). `settings`: when given, the passage budget is checked too."""
    try:
        name = safe_name(raw_name)
    except UploadRefused as exc:
        return UploadResult(raw_name, False, str(exc))
    read_only = [Path(f) for f in read_only]
    try:
        max_bytes = int(max_mb * documents.MB)
        if not data:
            raise UploadRefused("empty file (0 bytes)")
        if len(data) > max_bytes:
            raise UploadRefused(f"too large ({documents.megabytes(len(data))} > {documents.megabytes(max_bytes)} limit)")
        doc = _check_content(name, data, max_bytes)
        if settings is not None:
            _check_budget(doc, settings)
        for shipped in read_only:
            if os.path.lexists(shipped / name):
                raise UploadRefused(f"a document named {name} ships with the application (in {shipped}, read-only): "
                                    "rename your file to add it")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if target.is_symlink():  # writing or replacing it could write outside the folder: never
            raise UploadRefused(f"{name} is a symbolic link in the library folder: not overwritten")
        if target.resolve().parent != folder.resolve():
            raise UploadRefused("the file name points outside the library folder")
        digest = hashlib.sha256(data).hexdigest()
        existed = target.exists()
        if existed:
            if not target.is_file():
                raise UploadRefused(f"{name} exists in the library folder and is not a file")
            if documents.file_hash(target) == digest:
                return UploadResult(name, True, "unchanged: already in the library", target)
            if not replace:
                raise UploadRefused(f"another document named {name} is already in the library; tick “replace” to overwrite it")
        twin = _same_content([folder, *read_only], digest, target)
        if twin:
            raise UploadRefused(f"same content as {twin}, already in the library")
    except UploadRefused as exc:
        return UploadResult(name, False, str(exc))
    except OSError as exc:
        return UploadResult(name, False, f"cannot check the library folder: {exc.strerror or exc}")
    tmp: Path | None = None
    try:
        # a new file (O_CREAT | O_EXCL: never an existing name nor a link), then renamed over the name:
        # rename replaces a directory entry, it never writes through one
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".upload")
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        return UploadResult(name, False, f"cannot write to the library folder: {exc.strerror or exc}")
    return UploadResult(name, True, "replaced" if existed else "added", target, changed=True)
