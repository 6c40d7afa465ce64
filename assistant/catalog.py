"""What a knowledge base holds, read from its per-document records (no passage is read): its documents
(`list_documents`: the Library page, `assistant kb docs`, the API), counts per knowledge base
(`kb_summaries`: `assistant kb list`, `GET /v1/kbs`) and one hash of its content (eval reports).
"""
from __future__ import annotations

from dataclasses import dataclass

from assistant.config import Settings
from assistant.indexing import kb_record, open_store, records_of, sync_lexical
from assistant.lexical import DocRecord, fingerprint
from assistant.store import KB_RECORD, VectorStore, check_kb_name


@dataclass
class DocumentInfo:
    source: str
    title: str
    chunks: int
    content_hash: str
    size: int
    indexed_at: str
    complete: bool


def list_documents(settings: Settings, kb: str | None = None) -> list[DocumentInfo]:
    kb = check_kb_name(kb or settings.kb)
    index = sync_lexical(settings, kb, open_store(settings, kb, create=False))
    return [
        DocumentInfo(source=source, title=r.title or source, chunks=len(r.ids), content_hash=r.content_hash,
                     size=int(r.size or 0), indexed_at=r.indexed_at or "", complete=r.complete)
        for source, r in sorted(index.documents().items())
    ]


@dataclass
class KbSummary:
    name: str
    documents: int
    passages: int  # the passages the documents' records list (as `list_documents` counts them)


def kb_summary(settings: Settings, kb: str, store: VectorStore | None = None) -> KbSummary:
    """Counts of a knowledge base from its per-document records alone: no passage is read (except once,
    for a knowledge base that has no records yet, from the passages' metadata)."""
    kb = check_kb_name(kb)
    store = store or VectorStore(settings, kb, None, None, create=False)  # no embedder: any model will do
    records = records_of(settings, kb, store)
    kb_record(store, records)
    docs = [DocRecord.from_meta(m) for m in records.state_records() if m.get("source") != KB_RECORD]
    return KbSummary(kb, len(docs), sum(len(d.ids) for d in docs))


def kb_summaries(settings: Settings) -> list[KbSummary]:
    """Every knowledge base with its counts (`assistant kb list`, `GET /v1/kbs`); a knowledge base
    dropped between the listing and its count is left out."""
    from assistant.store import KnowledgeBaseMissing, list_kbs

    out = []
    for kb in list_kbs(settings):
        try:
            out.append(kb_summary(settings, kb))
        except KnowledgeBaseMissing:
            continue
    return out


def kb_content_hash(settings: Settings, kb: str | None = None) -> str:
    """One hash of the knowledge base's documents (names + content hashes), for eval reports."""
    docs = list_documents(settings, kb)
    return fingerprint([f"{d.source}:{d.content_hash}" for d in docs])[:16]
