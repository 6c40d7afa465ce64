"""Loading source files (.txt, .md, .html, .pdf, .docx) into `Document`s: the one place that reads them.

Every failure surfaces as `UnsupportedDocument` with a short, human reason, so ingestion can report a
file as skipped instead of crashing. `Document.text` is final: later offsets index into it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
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

def file_hash(path: Path) -> str:
    """sha256 hex digest of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
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


def _walk(root: Path) -> list[Path]:
    """Every non-junk file under the folder `root`, sorted (empty when it is not a folder)."""
    if not root.is_dir():
        return []
    found = [p for p in root.rglob("*") if p.is_file() and not _is_junk(p.relative_to(root))]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def iter_files(root: Path) -> list[Path]:
    """Candidate documents under `root` (any type, so ingest can report the unsupported ones), sorted."""
    root = Path(root)
    if root.is_file():
        return [root]
    return [p for p in _walk(root) if not is_readme_like(p.relative_to(root))]


def set_aside_files(root: Path) -> list[Path]:
    """The README-like files under `root` that `iter_files` leaves out, so ingest can say so."""
    root = Path(root)
    return [p for p in _walk(root) if is_readme_like(p.relative_to(root))]


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
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
    manifest = _read_json(root / MANIFEST_NAME) if (root / MANIFEST_NAME).is_file() else None
    for name, entry in (manifest or {}).items():
        if isinstance(entry, dict):
            result[str(name)] = dict(entry)
        else:
            log.warning("ignoring metadata for %s in %s: not an object", name, MANIFEST_NAME)
    sidecars = root.rglob(f"*{SIDECAR_SUFFIX}") if root.is_dir() else []
    for sidecar in sorted(sidecars):
        rel = sidecar.relative_to(root)
        entry = None if _hidden(rel) else _read_json(sidecar)
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
    path: Path, root: Path | None = None, metadata: dict | None = None, max_bytes: int | None = 50_000_000
) -> Document:
    """Read one file into a `Document`; raises `UnsupportedDocument` (never a library error)."""
    path = Path(path)
    source = _source_name(path, root)
    suffix = path.suffix.lower()
    extractor = _EXTRACTORS.get(suffix)
    if extractor is None:
        raise UnsupportedDocument(source, f"unsupported type {suffix or '(no extension)'}")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise UnsupportedDocument(source, f"too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit)")
        data = path.read_bytes()
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
