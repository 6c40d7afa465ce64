"""`assistant serve`: one long-lived process (or N uvicorn workers) answering many clients at once
(registered by assistant/cli.py)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `assistant --help` registers this command without pydantic
    from assistant.config import Settings


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="serve the HTTP API (OpenAI-compatible chat completions, search, ingest)")
    p.add_argument("--host", help="address to bind (default: api_host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: api_port, 8000)")
    p.add_argument("--workers", type=int, help="worker processes, each with its own warm model (default: api_workers, 1)")
    p.set_defaults(func=cmd_serve)


def refusal(settings: Settings, host: str, workers: int) -> str | None:
    """Why this configuration must not be served, or None."""
    from assistant.api.app import is_loopback

    if not is_loopback(host) and not settings.api_key:
        return (f"refusing to bind {host} without an API key: anyone who can reach it could read and change "
                "the knowledge bases. Set ASSISTANT_API_KEY, or bind 127.0.0.1.")
    if workers > 1 and not settings.chroma_host:
        return ("--workers > 1 needs a Chroma server (CHROMA_HOST): with embedded Chroma each worker keeps its "
                "own copy of the vector index in memory and would not see another worker's ingest. "
                "Use one worker (it serves requests concurrently), or start `chroma run` and set CHROMA_HOST.")
    return None


def cmd_serve(args, settings: Settings) -> int:
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    workers = args.workers or settings.api_workers
    why = refusal(settings, host, workers)
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    import uvicorn

    if workers == 1:
        from assistant.api.app import create_app

        app = create_app(settings)
    else:  # each worker process builds its own application from the same environment
        app = "assistant.api.app:create_app"
    print(f"serving on http://{host}:{port} (docs: /docs){' with an API key' if settings.api_key else ''}",
          file=sys.stderr)
    uvicorn.run(app, host=host, port=port, workers=workers if workers > 1 else None,
                factory=workers > 1, log_level="info", timeout_graceful_shutdown=5)
    return 0
