"""Saving an uploaded file into a knowledge base's folder, safely: the rules shared by the Library page
(ui/uploads.py re-exports them) and the HTTP API's upload route. No Streamlit here: easy to test.

A file is written only after every check passed: a safe base name (no path parts, not hidden, not a
name the indexer ignores), a supported type, a size within the limit, content that
`documents.load` can read, and no silent overwrite of another document. It lands in the folder
atomically (written to a hidden temporary file, then renamed), so a refused or failed upload never
touches what is already there.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from assistant import documents

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


def _check_content(name: str, data: bytes, max_bytes: int) -> None:
    """Load the bytes exactly as the indexer will, from a private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        if path not in documents.iter_files(Path(tmp)):
            raise UploadRefused("the indexer ignores files with this name (README, LICENSE, metadata…): rename it")
        try:
            documents.load(path, root=Path(tmp), max_bytes=max_bytes)
        except documents.UnsupportedDocument as exc:
            raise UploadRefused(exc.reason) from exc


def _same_content(folder: Path, digest: str, skip: Path) -> str | None:
    for path in documents.iter_files(folder):
        if path != skip and path.stat().st_size and documents.file_hash(path) == digest:
            return path.relative_to(folder).as_posix()
    return None


def save_upload(folder: Path, raw_name: str, data: bytes, max_mb: float, replace: bool = False) -> UploadResult:
    """Validate one upload and write it into `folder`; never raises for a bad upload."""
    try:
        name = safe_name(raw_name)
    except UploadRefused as exc:
        return UploadResult(raw_name, False, str(exc))
    try:
        max_bytes = int(max_mb * 1024 * 1024)
        if not data:
            raise UploadRefused("empty file (0 bytes)")
        if len(data) > max_bytes:
            raise UploadRefused(f"too large ({len(data) / 1e6:.1f} MB > {max_mb:g} MB limit)")
        _check_content(name, data, max_bytes)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
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
        twin = _same_content(folder, digest, target)
        if twin:
            raise UploadRefused(f"same content as {twin}, already in the library")
    except UploadRefused as exc:
        return UploadResult(name, False, str(exc))
    except OSError as exc:
        return UploadResult(name, False, f"cannot check the library folder: {exc.strerror or exc}")
    tmp = folder / f".{name}.{os.getpid()}.upload"
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        return UploadResult(name, False, f"cannot write to the library folder: {exc.strerror or exc}")
    return UploadResult(name, True, "replaced" if existed else "added", target, changed=True)
