"""The corpora the benchmarks run on.

- A PIAF sample (real French Wikipedia paragraphs with crowd-written questions), written as a
  knowledge-base folder plus a data set by the eval suite's SQuAD importer.
- Synthetic scale corpora (1k / 10k / 100k passages): paragraphs made of real French sentences
  (PIAF contexts and NoMIRACL passages) drawn by a seeded generator, so BM25 sees a real vocabulary
  and every run builds the same corpus.
"""
from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

from bench_common import GOLD, NOMIRACL_CORPUS, PIAF


@lru_cache(maxsize=1)
def piaf_articles() -> list[dict]:
    return json.loads(PIAF.read_text(encoding="utf-8"))["data"]


def piaf_sample(out_dir: Path, articles: int, seed: int = 0, max_questions: int | None = None):
    """`out_dir/docs/` (one .txt per article) and `out_dir/dataset.jsonl`; returns (docs_dir, items)."""
    from assistant.evaluation.dataset import load_dataset
    from assistant.evaluation.importers import import_squad

    report = import_squad(PIAF, out_dir, articles=articles, seed=seed, max_questions=max_questions, lang="fr")
    return report.docs_dir, load_dataset(report.dataset)


def gold_items():
    """The gold set on the default articles (answerable and unanswerable questions)."""
    from assistant.evaluation.dataset import load_dataset

    return load_dataset(GOLD)


def piaf_questions(n: int, seed: int = 1) -> list[str]:
    """`n` PIAF questions (any article), for latency loops."""
    qs = [qa["question"].strip() for a in piaf_articles() for p in a["paragraphs"] for qa in p["qas"]]
    qs = [q for q in qs if q]
    random.Random(seed).shuffle(qs)
    return qs[:n]


@lru_cache(maxsize=1)
def sentence_pool() -> tuple[str, ...]:
    """Real French sentences (30–300 characters) from PIAF paragraphs and NoMIRACL passages."""
    from assistant.sentences import sentence_spans

    texts = [p["context"] for a in piaf_articles() for p in a["paragraphs"]]
    if NOMIRACL_CORPUS.is_file():
        with NOMIRACL_CORPUS.open(encoding="utf-8") as f:
            texts += [json.loads(line).get("text", "") for line in f if line.strip()]
    pool = []
    for text in texts:
        for span in sentence_spans(text):
            s = " ".join(text[span.start : span.end].split())
            if 30 <= len(s) <= 300:
                pool.append(s)
    return tuple(dict.fromkeys(pool))  # unique, in a stable order


def synthetic_corpus(folder: Path, n_passages: int, per_doc: int = 50, seed: int = 42) -> int:
    """Write about `n_passages` paragraphs of 380–590 characters into `folder` (`per_doc` a file).

    With chunk overlap 0 and chunk_chars 600 the chunker turns each paragraph into exactly one
    passage (a paragraph of >= 0.6 x 600 characters always ends its passage). Returns the number of
    paragraphs written.
    """
    rng = random.Random(seed)
    pool = sentence_pool()
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    doc = 0
    titles = {}
    while written < n_passages:
        paras = []
        for _ in range(min(per_doc, n_passages - written)):
            target = rng.randint(380, 590)
            sentences: list[str] = []
            size = 0
            while size < target:
                s = rng.choice(pool)
                if size + len(s) + 1 > 590:
                    if size >= 380:
                        break
                    continue
                sentences.append(s)
                size += len(s) + 1
            paras.append(" ".join(sentences))
        name = f"doc-{doc:05d}.txt"
        (folder / name).write_text("\n\n".join(paras) + "\n", encoding="utf-8")
        titles[name] = {"title": f"Document synthétique {doc}"}
        written += len(paras)
        doc += 1
    (folder / "_metadata.json").write_text(json.dumps(titles, ensure_ascii=False), encoding="utf-8")
    return written
