"""`assistant ask` and `assistant chat`: the answer chain in the terminal (registered by assistant/cli.py)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `assistant --help` registers these commands without pydantic
    from assistant.config import Settings
    from assistant.models import Answer, Turn


def register(subparsers) -> None:
    p = subparsers.add_parser("ask", help="answer one question from the knowledge base, with citations")
    p.add_argument("question")
    p.add_argument("--kb", help="knowledge base (default: ASSISTANT_KB or 'default')")
    p.add_argument("--json", action="store_true", help="print the whole answer object as JSON")
    p.add_argument("-k", type=int, default=None, help="passages to retrieve")
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("chat", help="terminal chat that keeps the conversation (/new resets)")
    p.add_argument("--kb", help="knowledge base (default: ASSISTANT_KB or 'default')")
    p.set_defaults(func=cmd_chat)


def _settings(settings: Settings, k: int | None) -> Settings:
    if k is None:
        return settings
    k = max(1, min(50, k))
    return settings.model_copy(update={"top_k": k, "answer_passages": k})


def cmd_ask(args, settings: Settings) -> int:
    from assistant.chain import Assistant

    answer = Assistant(_settings(settings, args.k), kb=args.kb).ask(args.question)
    if args.json:
        print(answer.model_dump_json(indent=2))
        return 1 if answer.error else 0
    if answer.error:
        print(f"error: {answer.error}", file=sys.stderr)
        return 1
    _console().print(render(answer))
    return 0


def _console():
    from assistant.cli import _console as console

    return console()


def render(answer: Answer):
    """The answer for rich: text, then the numbered sources; declines and conflicts marked. Every string that
    comes from a document or a model is a literal `Text` (no markup, no emoji shortcodes)."""
    from rich.text import Text

    lines: list = []
    if answer.declined:
        lines.append(Text("✗ Not in the sources", "bold yellow"))
    if answer.conflicts:
        lines.append(Text("⚠ The sources disagree", "bold magenta"))
    lines.append(Text(answer.text))
    if answer.citations:
        lines.append(Text(""))
        lines.append(Text("Sources", "bold"))
        for c in answer.citations:
            line = Text.assemble("  ", (f"[{c.number}]", "bold cyan"), " ", c.title, " — ", (c.source, "dim"))
            if not c.supported:
                line.append(" (not supported by the passage)", "red")
            lines.append(line)
            lines.append(Text(f"      « {_short(c.quote)} »"))
    for conflict in answer.conflicts:
        line = Text(f"conflict on {conflict.about}: ", "magenta")
        for i, v in enumerate(conflict.values):
            line.append((", " if i else "") + f"{v.value} ({v.source}{f' [{v.citation}]' if v.citation else ''})",
                        "magenta")
        lines.append(line)
    if answer.unsupported_sentences:
        lines.append(Text(f"{len(answer.unsupported_sentences)} sentence(s) not supported by the cited passages", "red"))
    return Text("\n").join(lines)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + " …"


def cmd_chat(args, settings: Settings) -> int:
    from rich.live import Live
    from rich.text import Text

    from assistant.chain import Assistant
    from assistant.models import Answer, Turn

    console = _console()
    assistant = Assistant(settings, kb=args.kb)
    console.print(
        Text.assemble(("Summit assistant", "bold"), " — knowledge base ", (assistant.kb, "cyan"), ", generator ",
                      (assistant.generator_name, "cyan"), f" ({assistant.model_name}). Ask a question; ",
                      ("/new", "bold"), " starts a new conversation; an empty line or Ctrl-D quits.")
    )
    history: list[Turn] = []
    while True:
        try:
            question = console.input("[bold green]> [/]")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return 0
        question = question.strip()
        if not question:
            return 0
        if question == "/new":
            history = []
            console.print("[dim]New conversation.[/]")
            continue
        answer = None
        streamed = ""
        with Live(Text(""), console=console, transient=True, refresh_per_second=12) as live:
            for item in assistant.stream(question, history):
                if isinstance(item, Answer):
                    answer = item
                else:
                    streamed += item
                    live.update(Text(streamed))
        if answer is None or answer.error:
            console.print(Text(f"error: {answer.error if answer else 'no answer'}", "red"))
            continue
        if answer.standalone_question != question:
            console.print(Text(f"(understood as: {answer.standalone_question})", "dim"))
        console.print(render(answer))
        console.print()
        history.append(Turn(question=question, answer=answer.text))
