"""The lexical side of hybrid retrieval: BM25 (bm25s) over accent-folded, stemmed, stop-word-free tokens.

The index is derived state: it is rebuilt from the passages stored in Chroma whenever its recorded
fingerprint (the sorted passage ids) no longer matches the collection, so a crash can never leave it
out of step for long.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from assistant.language import fold

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS, STOPWORDS_FRENCH

    extra = {"l", "d", "j", "m", "n", "s", "t", "c", "qu", "a", "y", "est", "ont", "sont", "ete"}
    return frozenset(fold(w) for w in (*STOPWORDS_EN_PLUS, *STOPWORDS_FRENCH, *extra))


@lru_cache(maxsize=4)
def _stemmer(language: str):
    import Stemmer

    return Stemmer.Stemmer(language)


def detect_language(texts: Sequence[str]) -> str:
    """'french' or 'english', from stop-word counts over a sample of the corpus."""
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

    fr, en = set(STOPWORDS_FRENCH) - set(STOPWORDS_EN), set(STOPWORDS_EN) - set(STOPWORDS_FRENCH)
    words = [w for t in texts[:500] for w in _WORD.findall(t.lower())[:200]]
    return "english" if sum(w in en for w in words) > sum(w in fr for w in words) else "french"


def tokenize(text: str, language: str = "french") -> list[str]:
    stem = _stemmer(language).stemWord
    stop = stopwords()
    return [stem(w) for w in _WORD.findall(fold(text)) if w not in stop and (len(w) > 1 or w.isdigit())]


def fingerprint(ids: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for i in sorted(ids):
        digest.update(i.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class LexicalIndex:
    """BM25 over passages, saved next to the knowledge base's other state."""

    def __init__(self, ids: list[str], bm25, language: str, fp: str):
        self.ids, self._bm25, self.language, self.fingerprint = ids, bm25, language, fp

    @classmethod
    def build(cls, ids: list[str], texts: list[str], language: str | None = None) -> "LexicalIndex":
        import bm25s

        language = language or detect_language(texts)
        tokens = [tokenize(t, language) or ["__empty__"] for t in texts]
        bm25 = bm25s.BM25()
        if ids:
            bm25.index(tokens, show_progress=False)
        return cls(list(ids), bm25, language, fingerprint(ids))

    def save(self, folder: Path) -> None:
        """Write to a temporary folder, then swap it in: a crash leaves the old index or the new one."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.ids:
            self._bm25.save(str(tmp))
        (tmp / "meta.json").write_text(
            json.dumps({"ids": self.ids, "language": self.language, "fingerprint": self.fingerprint})
        )
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> "LexicalIndex | None":
        import bm25s

        try:
            meta = json.loads((folder / "meta.json").read_text())
            bm25 = bm25s.BM25.load(str(folder), mmap=False) if meta["ids"] else bm25s.BM25()
        except (OSError, ValueError, KeyError):
            return None
        return cls(meta["ids"], bm25, meta["language"], meta["fingerprint"])

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """(passage id, BM25 score) of the best n passages with a positive score."""
        if not self.ids:
            return []
        token_ids = self._bm25.get_tokens_ids(tokenize(query, self.language))
        if not token_ids:
            return []
        scores = self._bm25.get_scores_from_ids(token_ids)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]
