"""Server mode: several app processes, each with its own data dir, share one `chroma run`.

The passages and the per-document records live on the server; each process keeps its own lexical
index (SQLite, in its data dir) and brings it up to date from the server when the knowledge base's
generation changes. So an ingest or a delete made by one process is searchable, lexically and densely,
from another one that is already running, without a restart.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from assistant.config import Settings
from assistant.catalog import list_documents
from assistant.indexing import ingest
from assistant.retrieval import open_retriever

from conftest import KNOWLEDGE, ROOT

pytestmark = pytest.mark.slow

OTHER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from assistant.config import Settings
    from assistant.indexing import delete_document, ingest
    settings = Settings(data_dir={data!r}, chroma_host={host!r}, chroma_port={port}, embeddings="hashing")
    if {delete!r}:
        assert delete_document(settings, {delete!r}, kb="shared", remove_file=False)
    else:
        report = ingest(settings, {folder!r}, kb="shared")
        print(report.added, report.embedded)
    """
)

NEW = "# Fromages\n\nLe vacherin Mont-d'Or se déguste chaud, à la cuillère, avec des pommes de terre.\n"


def _other_process(tmp_path, host, port, folder=None, delete=""):
    script = OTHER.format(root=str(ROOT), data=str(tmp_path / "data-a"), host=host, port=port,
                          folder=str(folder), delete=delete)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_an_ingest_in_one_process_is_searchable_from_another(chroma_server, tmp_path):
    host, port, _ = chroma_server
    folder = tmp_path / "docs"
    shutil.copytree(KNOWLEDGE, folder, ignore=shutil.ignore_patterns("README*", "LICENSE*"))
    # this process (B): its own data dir, the knowledge base indexed, a retriever open and used
    here = Settings(data_dir=tmp_path / "data-b", chroma_host=host, chroma_port=port, embeddings="hashing",
                    lexical_sync_seconds=0)
    ingest(here, folder, kb="shared")
    retriever = open_retriever(here, "shared", k=5)
    assert all(p.source != "vacherin.md" for p in retriever.search("vacherin Mont-d'Or cuillère"))

    # another process (A), another data dir, adds a document to the same folder's knowledge base
    (folder / "vacherin.md").write_text(NEW, encoding="utf-8")
    assert "vacherin.md" in _other_process(tmp_path, host, port, folder=folder)

    # the retriever already open here finds it, by its words and by its vector
    hit = retriever.search("vacherin Mont-d'Or cuillère")[0]
    assert hit.source == "vacherin.md"
    assert hit.lexical_rank == 1 and hit.dense_rank is not None
    assert "vacherin.md" in {d.source for d in list_documents(here, "shared")}
    # and this process's next ingest of the same folder has nothing to do
    assert ingest(here, folder, kb="shared").embedded == 0

    # a delete over there: gone from here too
    _other_process(tmp_path, host, port, delete="vacherin.md")
    assert all(p.source != "vacherin.md" for p in retriever.search("vacherin Mont-d'Or cuillère"))
    assert "vacherin.md" not in {d.source for d in list_documents(here, "shared")}
