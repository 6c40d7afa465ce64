"""Library: the documents of a knowledge base; upload, index, delete, re-index; create and switch bases."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from assistant.folders import delete_refusal, read_only_dirs, source_dir_of, upload_dir_of
from assistant.catalog import list_documents
from assistant.indexing import delete_document, ingest
from assistant.store import KnowledgeBaseMissing, StoreError, check_kb_name, list_kbs
from ui import state
from ui.render import alert_text as esc
from ui.uploads import allowed_types, save_upload

settings = state.session_settings()
kb = settings.kb
folder = source_dir_of(settings, kb)
upload_folder = upload_dir_of(settings, kb)  # for `default`: in the data directory, knowledge/ stays read-only
read_only = read_only_dirs(settings, kb)

st.title("Library")
if read_only:
    st.caption(f"Knowledge base **{kb}** · shipped documents `{folder}` (read-only) · your uploads `{upload_folder}`")
else:
    st.caption(f"Knowledge base **{kb}** · documents folder `{folder}`")

if "library_notice" in st.session_state:  # outcome of the previous action, shown after its rerun
    kind, text = st.session_state.pop("library_notice")
    getattr(st, kind)(text)


def run_ingest(label: str, rebuild: bool = False) -> bool:
    """Index the folder with a progress indicator; True when it finished."""
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0, text="Reading the folder…")

        def progress(done: int, total: int, name: str) -> None:
            bar.progress(done / total if total else 1.0, text=f"{done}/{total} · {name}")

        try:
            folder.mkdir(parents=True, exist_ok=True)
            report = ingest(settings, source_dir=folder, kb=kb, progress=progress, rebuild=rebuild,
                            waiting=lambda message: bar.progress(0.0, text=message))
        except Exception as exc:  # StoreError, embedder failure, unreadable folder…
            status.update(label=f"Indexing failed: {esc(state.short_error(exc))}", state="error")
            return False
        finally:
            state.library_changed()
        bar.progress(1.0, text="Done")
        for name, reason in report.skipped:
            st.warning(f"Skipped {esc(name)}: {esc(reason)}")
        parts = [f"{len(report.added)} added", f"{len(report.updated)} updated", f"{len(report.removed)} removed",
                 f"{len(report.unchanged)} unchanged"]
        status.update(label=f"Indexed in {report.seconds:.1f} s: " + ", ".join(parts) + f" · {report.chunks} passages",
                      state="complete", expanded=bool(report.skipped))
    return True


# --- the documents ----------------------------------------------------------------------------------
docs, missing, no_index = [], None, False
try:
    docs = list_documents(settings, kb)
except KnowledgeBaseMissing:
    no_index = True
except StoreError as exc:
    missing = state.short_error(exc)
except Exception as exc:
    missing = f"cannot read the knowledge base: {state.short_error(exc)}"

if no_index:
    st.info(f"Knowledge base **{kb}** has no index yet. Upload documents below, or index its folder.")
elif missing:
    st.error(esc(missing))
elif not docs:
    st.info("No documents yet: upload some below.")
else:
    c1, c2 = st.columns(2)
    c1.metric("Documents", len(docs))
    c2.metric("Passages", sum(d.chunks for d in docs))
    table = pd.DataFrame(
        {
            "title": [d.title for d in docs],
            "file": [d.source for d in docs],
            "size (KB)": [round(d.size / 1000, 1) for d in docs],  # KB = 10^3 bytes, as MB = 10^6 everywhere
            "chunks": [d.chunks for d in docs],
            "last indexed": [d.indexed_at.replace("T", " ").replace("+00:00", " UTC") for d in docs],
            "hash": [d.content_hash[:12] for d in docs],
            "complete": [d.complete for d in docs],
        }
    )
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "title": st.column_config.TextColumn("title", width="medium"),
        "complete": st.column_config.CheckboxColumn("complete", width="small", help="all passages indexed"),
    })
    if not all(d.complete for d in docs):
        st.warning("Some documents are partly indexed: use “Sync with folder” to repair them.")

# --- upload ---------------------------------------------------------------------------------------------
st.subheader("Add documents")
uploader_key = f"uploader-{st.session_state.get('uploads_done', 0)}"
files = st.file_uploader(
    f"Text, Markdown, HTML, PDF or Word files, up to {settings.max_upload_mb:g} MB each",
    type=allowed_types(),
    accept_multiple_files=True,
    key=uploader_key,
    max_upload_size=max(1, math.ceil(settings.max_upload_mb)),
)
replace = st.checkbox("Replace a document that has the same file name", key="upload_replace")
if st.button("Add and index", type="primary", disabled=not files):
    results = [save_upload(upload_folder, f.name, f.getvalue(), settings.max_upload_mb, replace,
                           read_only=read_only, settings=settings) for f in files or []]
    for r in results:
        if r.ok:
            st.success(f"{esc(r.name)}: {esc(r.message)}")
        else:
            st.error(f"{esc(r.name)} refused: {esc(r.message)}")
    if any(r.changed for r in results) and run_ingest("Indexing the new documents…"):
        st.session_state["uploads_done"] = st.session_state.get("uploads_done", 0) + 1
        saved = ", ".join(esc(r.name) for r in results if r.changed)
        refused = [f"{esc(r.name)} ({esc(r.message)})" for r in results if not r.ok]
        text = f"Added and indexed {saved}." + (f" Refused: {'; '.join(refused)}." if refused else "")
        st.session_state["library_notice"] = ("warning" if refused else "success", text)
        st.rerun()

# --- delete and re-index -------------------------------------------------------------------------------
if docs:
    st.subheader("Remove a document")
    st.caption(f"Deleting removes the file from `{upload_folder}` and its passages from the index at once."
               + (" Shipped documents are read-only: only your uploads can be deleted." if read_only else ""))
    col1, col2 = st.columns([3, 1], vertical_alignment="bottom")
    target = col1.selectbox("Document", [d.source for d in docs], key="delete_choice",
                            format_func=lambda s: next((f"{d.title} ({s})" for d in docs if d.source == s), s))
    read_only_doc = delete_refusal(settings, target, kb) is not None  # shipped: its file is never deleted
    why = "This document ships with the application: it is read-only here, only your uploads can be deleted."
    if read_only_doc:
        st.caption(why)
    if col2.button("Delete", key="delete_button", width="stretch", disabled=read_only_doc,
                   help=why if read_only_doc else None):
        try:
            delete_document(settings, target, kb)
            st.session_state["library_notice"] = ("success", f"Deleted {esc(target)}: its passages left the index.")
        except Exception as exc:
            st.session_state["library_notice"] = ("error", f"Could not delete {esc(target)}: {esc(state.short_error(exc))}")
        state.library_changed()
        st.rerun()

st.subheader("Maintenance")
col1, col2 = st.columns(2)
if col1.button("Sync with folder", help="Index new or changed files of the folder, drop removed ones", width="stretch"):
    run_ingest("Syncing with the folder…")
if col2.button("Re-index all", help="Rebuild this knowledge base from its folder, from scratch", width="stretch"):
    run_ingest("Re-indexing every document…", rebuild=True)

# --- knowledge bases --------------------------------------------------------------------------------------
st.subheader("Knowledge bases")
known = st.session_state.get(state.KBS_KEY)  # listed by the sidebar on this run; None: store unreachable
if known is None:
    st.caption("The knowledge bases cannot be listed while the vector store is unavailable.")
else:
    st.caption("Existing: " + (", ".join(f"`{k}`" for k in known) or "none") + " · switch in the sidebar.")
with st.form("new_kb", clear_on_submit=True, border=False):
    col1, col2 = st.columns([3, 1], vertical_alignment="bottom")
    name = col1.text_input("New knowledge base", placeholder="lower-case letters, digits, - or _")
    created = col2.form_submit_button("Create and switch", width="stretch")
if created:
    try:
        name = check_kb_name((name or "").strip())
        if name in (known if known is not None else list_kbs(settings)):
            raise StoreError(f"knowledge base {name!r} already exists: pick it in the sidebar")
        new_folder = source_dir_of(settings, name)
        new_folder.mkdir(parents=True, exist_ok=True)
        ingest(settings, source_dir=new_folder, kb=name)
    except Exception as exc:
        st.error(esc(state.short_error(exc)))
    else:
        state.switch_kb(name)
        state.library_changed()
        st.session_state["library_notice"] = ("success", f"Created knowledge base {name} (folder `{new_folder}`).")
        st.rerun()
