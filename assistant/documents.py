"""Loading source files (.txt, .md, .html, .pdf, .docx) into `Document`s: the one place that reads them.

Every failure surfaces as `UnsupportedDocument` with a short, human reason, so ingestion can report a
file as skipped instead of crashing. `Document.text` is final: later offsets index into it.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.models import Document, PageSpan

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES: frozenset[str] = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"})
MANIFEST_NAME = "_metadata.json"
SIDECAR_SUFFIX = ".meta.json"
TITLE_MAX_CHARS = 120
_IGNORED_STEMS = {"readme", "license", "licence", "manifest", "changelog"}
_IGNORED_NAMES = {MANIFEST_NAME, "thumbs.db", "desktop.ini"}
_HTML_DROP = ["script", "style", "nav", "header", "footer", "noscript", "template", "head", "iframe", "svg"]
_HTML_BLOCKS = set(
    "address article aside blockquote caption dd div dl dt figcaption figure form h1 h2 h3 h4 h5 h6 hr li main"
    " ol p pre section table td th tr ul".split()
)


class UnsupportedDocument(Exception):
    """A file that cannot be turned into a document; `reason` says why in a few words."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


# --- files and metadata

MB = 1_000_000  # sizes are in megabytes (10^6 bytes) everywhere: settings, messages, Streamlit's uploader


def megabytes(size: int) -> str:
    """A byte count for messages, in the one unit used everywhere (MB = 10^6 bytes): "52.43 MB", "50 MB"."""
    value = size / MB
    text = f"{value:,.2f}".rstrip("0").rstrip(".") if value >= 1 else f"{value:.2g}"
    return f"{text} MB"


def _open_regular(path: Path):
    """Open a regular file for reading without following a symbolic link at its last component."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise IsADirectoryError(errno.EISDIR, "not a regular file", str(path))
    return fh


def file_hash(path: Path) -> str:
    """sha256 hex digest of the file's bytes (never read through a symbolic link)."""
    digest = hashlib.sha256()
    with _open_regular(path) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _is_junk(rel: Path) -> bool:
    """Hidden, metadata, editor/Office temporary or OS files: never documents, never reported."""
    name = rel.name.lower()
    return (
        name in _IGNORED_NAMES
        or name.endswith(SIDECAR_SUFFIX)
        or name.startswith("~$")
        or name.endswith("~")
        or _hidden(rel)
    )


def is_readme_like(rel: Path) -> bool:
    """README, LICENSE, CHANGELOG… describe a folder, they are not sources: set aside (and reported)."""
    return rel.name.lower().split(".", 1)[0] in _IGNORED_STEMS


def inside(path: Path, root: Path) -> bool:
    """Whether the real path of `path` (symbolic links and `..` resolved) is within the real `root`."""
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a symbolic-link loop
        return False


def _link_reason(path: Path, real_root: Path) -> str:
    """Why a symbolic link met in a folder is not read, in a few words."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop (RuntimeError before Python 3.13)
        return "broken or looping symbolic link: not followed"
    kind = "folder" if target.is_dir() else "file"
    if not target.is_relative_to(real_root):
        return f"symbolic link to a {kind} outside the folder: not read"
    rel = target.relative_to(real_root).as_posix()
    return f"symbolic link to the {kind} {rel} of this folder: links are not followed (the {kind} counts under its own name)"


def _entries(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(regular files, symbolic links, other entries) under `root`, hidden ones left out, links never followed."""
    files, links, other = [], [], []
    pending = [Path(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc)
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                links.append(path)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif entry.is_file(follow_symlinks=False):
                files.append(path)
            else:  # socket, FIFO, device: reading one could block or never end
                other.append(path)
    return files, links, other


@dataclass
class FolderScan:
    """What a folder holds for the indexer: candidate documents, README-like files, and entries refused."""

    files: list[Path] = field(default_factory=list)  # candidate documents (any type), sorted
    set_aside: list[Path] = field(default_factory=list)  # README, LICENSE…: not sources
    refused: list[tuple[str, str]] = field(default_factory=list)  # (relative name, reason): links, special files


def scan_folder(root: Path) -> FolderScan:
    """Every non-junk entry under the folder `root`. A file is a candidate only when it is a regular file
    whose real path is inside `root`: symbolic links (to files or folders, inside or outside, broken or
    looping) are never followed and are listed in `refused` with the reason."""
    root = Path(root)
    scan = FolderScan()
    if not root.is_dir():
        return scan
    real_root = root.resolve()
    files, links, other = _entries(root)

    def rel(path: Path) -> Path:
        return path.relative_to(root)

    for path in sorted(files, key=lambda p: rel(p).as_posix()):
        if _is_junk(rel(path)):
            continue
        (scan.set_aside if is_readme_like(rel(path)) else scan.files).append(path)
    for path in links:
        if not _is_junk(rel(path)):
            scan.refused.append((rel(path).as_posix(), _link_reason(path, real_root)))
    for path in other:
        if not _is_junk(rel(path)):
            scan.refused.append((rel(path).as_posix(), "not a regular file (socket, pipe or device): not read"))
    scan.refused.sort()
    return scan


def iter_files(root: Path) -> list[Path]:
    """Candidate documents under `root` (any type, so ingest can report the unsupported ones), sorted;
    never a symbolic link (see `scan_folder`)."""
    root = Path(root)
    if root.is_file() and not root.is_symlink():
        return [root]
    return scan_folder(root).files


def set_aside_files(root: Path) -> list[Path]:
    """The README-like files under `root` that `iter_files` leaves out, so ingest can say so."""
    return scan_folder(Path(root)).set_aside


def _read_json(path: Path) -> dict | None:
    try:
        with _open_regular(path) as fh:  # a metadata file that is a symbolic link is not read
            data = json.loads(fh.read().decode("utf-8-sig"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        log.warning("ignoring metadata file %s: %s", path, exc)
        return None


def load_metadata(root: Path) -> dict[str, dict]:
    """Source name -> metadata, from `root/_metadata.json` and `<file>.meta.json` sidecars (sidecar wins)."""
    root = Path(root)
    result: dict[str, dict] = {}
    manifest_path = root / MANIFEST_NAME
    manifest = _read_json(manifest_path) if manifest_path.is_file() and not manifest_path.is_symlink() else None
    for name, entry in (manifest or {}).items():
        if isinstance(entry, dict):
            result[str(name)] = dict(entry)
        else:
            log.warning("ignoring metadata for %s in %s: not an object", name, MANIFEST_NAME)
    files = _entries(root)[0] if root.is_dir() else []
    sidecars = [p for p in files if p.name.endswith(SIDECAR_SUFFIX)]
    for sidecar in sorted(sidecars):
        rel = sidecar.relative_to(root)
        entry = _read_json(sidecar)
        if entry is not None:
            source = rel.as_posix()[: -len(SIDECAR_SUFFIX)]
            result[source] = {**result.get(source, {}), **entry}
    return result


# --- extraction, one function per format; each returns (text, pages, title or None)

def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _looks_binary(text: str) -> bool:
    sample = text[:20_000]
    controls = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\n\r\f") or 0x7F <= ord(ch) < 0xA0)
    return bool(sample) and controls / len(sample) > 0.05


def _decode(data: bytes, source: str) -> str:
    """UTF-8 (BOM stripped), else cp1252, else latin-1; binary content is rejected."""
    if b"\x00" in data:
        raise UnsupportedDocument(source, "binary content, not text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        text = data.decode("latin-1")  # never fails
    if _looks_binary(text):
        raise UnsupportedDocument(source, "binary content, not text")
    return _normalise_newlines(text)


def _extract_text(data: bytes, source: str) -> tuple[str, list[PageSpan], str | None]:
    return _decode(data, source), [], None


def _html_pieces(node: Any, out: list[str], pre: bool = False) -> None:
    """Append text to `out`: whitespace collapsed, "\n" for <br>, "\n\n" around block elements."""
    from bs4.element import NavigableString, PreformattedString, Tag

    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, CDATA…
            continue
        if isinstance(child, NavigableString):
            text = str(child)
            out.append(re.sub(r"[^\S\n]+", " ", text) if pre else re.sub(r"\s+", " ", text))
        elif isinstance(child, Tag):
            edge = "\n\n" if child.name in _HTML_BLOCKS else ""
            out.append("\n" if child.name == "br" else edge)
            _html_pieces(child, out, pre or child.name == "pre")
            out.append(edge)


def _html_title(soup: Any) -> str | None:
    for tag in (soup.find("title"), soup.find("h1")):
        text = " ".join(tag.get_text(" ").split()) if tag else ""
        if text:
            return text
    return None


def _extract_html(data: bytes, source: str) -> tuple[str, list[PageSpan], str | None]:
    from bs4 import BeautifulSoup

    if b"\x00" in data:
        raise UnsupportedDocument(source, "binary content, not text")
    soup = BeautifulSoup(data, "lxml")
    title = _html_title(soup)
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    pieces: list[str] = []
    _html_pieces(soup.body or soup, pieces)
    blocks = []
    for block in re.split(r"\n{2,}", "".join(pieces)):
        lines = [" ".join(line.split()) for line in block.split("\n")]
        blocks.append("\n".join(line for line in lines if line))
    return "\n\n".join(b for b in blocks if b), [], title


def _extract_pdf(data: bytes, source: str) -> tuple[str, list[PageSpan], str | None]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise UnsupportedDocument(source, "unreadable PDF: encrypted (password required)")
    page_texts = [_normalise_newlines(page.extract_text() or "").strip() for page in reader.pages]
    parts, pages, offset = [], [], 0
    for number, page_text in enumerate(page_texts, start=1):
        if page_text:  # blank pages get no span; page numbers stay physical
            start = offset + (2 if parts else 0)  # 2 = the "\n\n" separator
            pages.append(PageSpan(page=number, start=start, end=start + len(page_text)))
            parts.append(page_text)
            offset = start + len(page_text)
    if not parts:
        raise UnsupportedDocument(source, "PDF has no extractable text (scanned?)")
    return "\n\n".join(parts), pages, None


def _docx_table_text(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells = {cell._tc: " ".join(cell.text.split()) for cell in row.cells}  # merged cells repeat
        rows.append(" | ".join(text for text in cells.values() if text))
    return "\n".join(row for row in rows if row)


def _extract_docx(data: bytes, source: str) -> tuple[str, list[PageSpan], str | None]:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    blocks = [
        _docx_table_text(item) if isinstance(item, Table) else _normalise_newlines(item.text).strip()
        for item in document.iter_inner_content()
    ]
    return "\n\n".join(b for b in blocks if b), [], None


_EXTRACTORS = {
    ".txt": _extract_text, ".md": _extract_text, ".markdown": _extract_text,
    ".html": _extract_html, ".htm": _extract_html, ".pdf": _extract_pdf, ".docx": _extract_docx,
}
_FAILURES = {".pdf": "unreadable PDF", ".docx": "broken .docx"}  # prefix of the reason when a library fails


# --- the entry point

def _short(exc: BaseException, limit: int = 120) -> str:
    """The exception's message on one line, cut to `limit` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _source_name(path: Path, root: Path | None) -> str:
    """Path relative to `root` as posix (also after resolving symlinks), else the file name."""
    if root is not None:
        for p, r in ((path, root), (path.resolve(), Path(root).resolve())):
            try:
                return p.relative_to(r).as_posix()
            except ValueError:
                continue
    return path.name


def title_from_text(text: str, markdown: bool = False) -> str | None:
    """First non-empty line, trimmed and cut to ~120 characters at a word boundary."""
    line = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    if markdown:
        line = line.lstrip("#").strip()
    if len(line) > TITLE_MAX_CHARS:
        cut = line.rfind(" ", 0, TITLE_MAX_CHARS + 1)
        line = line[: cut if cut > TITLE_MAX_CHARS // 2 else TITLE_MAX_CHARS].rstrip(" ,;:-")
    return line or None


def load(
    path: Path, root: Path | None = None, metadata: dict | None = None, max_bytes: int | None = 50 * MB
) -> Document:
    """Read one file into a `Document`; raises `UnsupportedDocument` (never a library error)."""
    path = Path(path)
    source = _source_name(path, root)
    suffix = path.suffix.lower()
    extractor = _EXTRACTORS.get(suffix)
    if extractor is None:
        raise UnsupportedDocument(source, f"unsupported type {suffix or '(no extension)'}")
    if path.is_symlink():
        raise UnsupportedDocument(source, "symbolic link: not followed")
    if root is not None and not inside(path, root):
        raise UnsupportedDocument(source, "outside the folder being indexed: not read")
    try:
        with _open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if max_bytes is not None and size > max_bytes:
                raise UnsupportedDocument(
                    source, f"too large ({megabytes(size)} > {megabytes(max_bytes)} limit)"
                )
            data = fh.read()
    except OSError as exc:
        raise UnsupportedDocument(source, f"unreadable file: {exc.strerror or _short(exc)}") from exc
    if not data:
        raise UnsupportedDocument(source, "empty file (0 bytes)")
    try:
        text, pages, found_title = extractor(data, source)
    except UnsupportedDocument:
        raise
    except Exception as exc:  # pypdf, python-docx, lxml… raise many types on corrupt input
        failure = _FAILURES.get(suffix, f"cannot read {suffix} file")
        raise UnsupportedDocument(source, f"{failure}: {_short(exc)}") from exc
    if not text.strip():
        raise UnsupportedDocument(source, "empty: no text content")
    meta = dict(metadata or {})
    given = meta.get("title").strip() if isinstance(meta.get("title"), str) else ""
    title = given or found_title or title_from_text(text, markdown=suffix in {".md", ".markdown"}) or path.stem
    return Document(
        source=source, title=title, text=text, content_hash=hashlib.sha256(data).hexdigest(),
        metadata=meta, pages=pages, size=len(data),
    )
