"""The `assistant` command: thin argument parsing over the package's functions.

Subcommands: ingest, search, kb list|docs|delete, config — plus `ask`/`chat` (assistant.answer_cli),
`eval` (assistant.evaluation.cli) and `llm serve|check` (assistant.llm_server), registered by their own modules.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import TYPE_CHECKING

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

if TYPE_CHECKING:  # imported by main(): `assistant --help` needs neither pydantic nor the settings
    from assistant.config import Settings


def _console():
    """Rich output where only our own markup is styled: no emoji shortcodes, no highlighting; document text
    goes through `literal()` (or print(..., markup=False))."""
    from rich.console import Console

    return Console(stderr=False, highlight=False, soft_wrap=True, emoji=False)


def literal(text: str, style: str = ""):
    """Document or model text for rich, printed as these exact characters (no markup, no emoji)."""
    from rich.text import Text

    return Text(text, style=style)


def cmd_ingest(args, settings: Settings) -> int:
    from tqdm import tqdm

    from assistant.indexing import ingest

    bar = None

    def progress(done: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="doc", desc="indexing", disable=args.quiet, file=sys.stderr)
        bar.set_postfix_str(name[-40:])
        bar.update(done - bar.n)

    def waiting(message: str) -> None:  # another ingest of this knowledge base runs: said even with --quiet
        print(message, file=sys.stderr, flush=True)

    report = ingest(settings, source_dir=args.path, kb=args.kb, progress=progress, rebuild=args.rebuild,
                    waiting=waiting)
    if bar:
        bar.close()
    if args.json:
        print(json.dumps(report.__dict__, indent=2, default=str))
        return 0
    if args.quiet and not report.changed and not report.skipped:
        return 0
    from rich.text import Text

    out = _console()
    out.print(Text.assemble(
        (report.kb, "bold"),
        f" ← {report.source_dir}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.removed)} removed, {len(report.unchanged)} unchanged, {len(report.skipped)} skipped; "
        f"{report.chunks} passages ({report.embedded} embedded) in {report.seconds:.1f} s",
    ))
    for name, reason in report.skipped:
        out.print(Text.assemble(("  skipped", "yellow"), f" {name}: {reason}"))
    return 0


def cmd_search(args, settings: Settings) -> int:
    from rich.text import Text

    from assistant.retrieval import open_retriever

    passages = open_retriever(settings, args.kb, k=args.k).search(args.query)
    if args.json:
        print(json.dumps([p.model_dump() for p in passages], indent=2, ensure_ascii=False))
        return 0
    out = _console()
    if not passages:
        out.print("No passage found.")
    for p in passages:
        dense = f"{p.dense_score:.3f}" if p.dense_score is not None else "-"
        lexical = f"{p.lexical_score:.2f}" if p.lexical_score is not None else "-"
        out.print(Text.assemble((f"{p.rank}.", "bold"), f" {p.source} ",
                                (f"{p.chunk_id} chars {p.start}-{p.end} fused {p.score:.4f} dense {dense} bm25 {lexical}", "dim")))
        out.print(literal("   " + " ".join(p.text.split())), soft_wrap=True)
    return 0


def cmd_kb_list(args, settings: Settings) -> int:
    from assistant.folders import source_dir_of
    from assistant.catalog import kb_summaries

    if args.json:  # names only: no record is read
        from assistant.store import list_kbs

        print(json.dumps(list_kbs(settings)))
        return 0
    kbs = kb_summaries(settings)  # counts from the per-document records, no passage read
    if not kbs:
        print("No knowledge base yet: run `assistant ingest`.")
    for kb in kbs:
        mark = "*" if kb.name == settings.kb else " "
        print(f"{mark} {kb.name}: {kb.documents} documents, {kb.passages} passages ← {source_dir_of(settings, kb.name)}")
    return 0


def cmd_kb_docs(args, settings: Settings) -> int:
    from assistant.catalog import list_documents

    docs = list_documents(settings, args.kb)
    if args.json:
        print(json.dumps([d.__dict__ for d in docs], indent=2, ensure_ascii=False))
        return 0
    for d in docs:
        flag = "" if d.complete else "  (incomplete: re-run ingest)"
        print(f"{d.source}\t{d.chunks} passages\t{d.size} bytes\t{d.indexed_at}\t{d.content_hash[:12]}\t{d.title}{flag}")
    return 0


def cmd_kb_delete(args, settings: Settings) -> int:
    """Drop a knowledge base's index. Documents are kept, and the messages say where; the files uploaded
    to it (its folder in the data dir) go only with --delete-uploads, confirmed by the prompt or --yes."""
    from assistant.folders import kb_documents
    from assistant.indexing import delete_kb

    name = args.name
    where = kb_documents(settings, name)
    owned = [f for f in where.owned if not f.is_symlink()]
    files = sum(1 for f in owned for p in f.rglob("*") if p.is_file())
    kept = where.outside + ([] if args.delete_uploads else owned)
    fate = "its index is removed"
    if args.delete_uploads and where.owned:
        fate += f", and the {files} uploaded file(s) in {', '.join(map(str, where.owned))} are deleted"
    if kept:
        fate += f"; the documents in {', '.join(map(str, kept))} are kept"
    if not args.yes:
        if sys.stdin.isatty():
            if input(f"Delete knowledge base {name!r}? {fate[0].upper() + fate[1:]}. [y/N] ").lower() != "y":
                return 1
        elif args.delete_uploads and where.owned:
            print(f"error: --delete-uploads deletes {files} uploaded file(s) in "
                  f"{', '.join(map(str, where.owned))}: add --yes to confirm", file=sys.stderr)
            return 2
    if not delete_kb(settings, name, delete_uploads=args.delete_uploads):
        print(f"No knowledge base named {name!r}.", file=sys.stderr)
        return 1
    print(f"Deleted knowledge base {name!r}: {fate}.")
    for folder in kept:
        same = folder in owned or (name == "default" and folder == settings.knowledge_dir)
        again = f"assistant ingest --kb {name}" if same else f"assistant ingest {folder} --kb {name}"
        print(f"  kept: {folder} (`{again}` indexes it again)")
    if owned and not args.delete_uploads:
        print(f"  `assistant kb delete {name} --delete-uploads` would delete the uploaded files too.")
    return 0


def cmd_config(args, settings: Settings) -> int:
    for key, value in settings.masked().items():
        print(f"{key} = {value}")
    print(f"generator (resolved) = {settings.resolved_generator}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="assistant", description="Grounded, cited answers about your documents.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="index a folder of documents (incremental)")
    p.add_argument("path", nargs="?", help="folder of documents (default: the knowledge base's folder)")
    p.add_argument("--kb", help="knowledge-base name (default: ASSISTANT_KB)")
    p.add_argument("--rebuild", action="store_true", help="drop the index first (e.g. after changing the embedding model)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when nothing changed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="print the passages retrieved for a query")
    p.add_argument("query")
    p.add_argument("--kb")
    p.add_argument("-k", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    kb = sub.add_parser("kb", help="knowledge bases").add_subparsers(dest="kb_command", required=True)
    p = kb.add_parser("list", help="list knowledge bases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_kb_list)
    p = kb.add_parser("docs", help="list the documents of a knowledge base")
    p.add_argument("--kb")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_kb_docs)
    p = kb.add_parser("delete", help="delete a knowledge base's index (its documents are kept)")
    p.add_argument("name")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--delete-uploads", action="store_true",
                   help="also delete the files uploaded to it (its folder in the data dir; never a folder of yours)")
    p.set_defaults(func=cmd_kb_delete)

    p = sub.add_parser("config", help="print the settings in force (secrets masked)")
    p.set_defaults(func=cmd_config)

    for module in ("assistant.answer_cli", "assistant.evaluation.cli", "assistant.api.cli", "assistant.llm_server"):
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return parser


def main(argv: list[str] | None = None, *, quick_exit: bool | None = None) -> int:
    """Run one command; returns its exit code. Run as the program (`argv` None: the `assistant` script,
    `python -m assistant.cli`), a command that succeeded ends the process at once (`quick_exit`)."""
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from assistant.config import ConfigError, Settings
    from assistant.store import StoreError

    try:
        settings = Settings()
    except (ConfigError, ValidationError) as exc:  # the environment or assistant.toml: no traceback
        print(f"error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        code = int(args.func(args, settings) or 0)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if code == 0 and (argv is None if quick_exit is None else quick_exit):
        _quick_exit(args.command)
    return code


# Commands that leave something running past their return: they exit the ordinary way.
_SLOW_EXIT_COMMANDS = ("serve", "llm")


def _quick_exit(command: str) -> None:
    """End a successful command without the interpreter's teardown (~0.2 s of a 1 s cold `assistant ask`:
    freeing ~1,500 modules, Chroma's and the encoder's native state, for a process that is ending anyway).

    First what an ordinary exit would do that matters: the exit handlers (atexit: e.g. a LangSmith tracer's
    flush, when the user turned tracing on), Chroma's embedded store closed (its clients' systems stopped:
    SQLite connections closed, segments released), logging flushed, then stdout and stderr. Everything the
    command wrote is committed before it returns (Chroma, SQLite and tantivy commits are synchronous).
    Falls back to the ordinary exit when another thread is still running or an output cannot be flushed."""
    import atexit
    import logging
    import threading

    if command in _SLOW_EXIT_COMMANDS:
        return
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        return  # work still in progress in another thread: let the interpreter wait for it
    atexit._run_exitfuncs()
    _close_chroma()
    logging.shutdown()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: the ordinary exit reports it
        return
    os._exit(0)


def _close_chroma() -> None:
    """Stop every Chroma system this process opened (what each client's `close()` does for the last one)."""
    if "chromadb" not in sys.modules:
        return
    from chromadb.api.shared_system_client import SharedSystemClient

    systems = list(SharedSystemClient._identifier_to_system.values())
    SharedSystemClient.clear_system_cache()
    for system in systems:
        system.stop()


if __name__ == "__main__":
    sys.exit(main())
