"""Shared fixtures: hermetic settings, the real knowledge base indexed once, a real Chroma server."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge"
SHARED = ROOT.parent / "shared"

# Nothing from the developer's shell may change what the tests see.
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CHROMA_HOST", "CHROMA_PORT", "ASSISTANT_GENERATOR",
             "ASSISTANT_KB", "ASSISTANT_DATA_DIR", "ASSISTANT_EMBEDDINGS", "ASSISTANT_CONFIG", "ASSISTANT_TOP_K",
             "ASSISTANT_LOCAL_MODEL", "ASSISTANT_LLM_OUTPUT"):
    os.environ.pop(_var, None)
os.environ.update({"LANGSMITH_TRACING_V2": "false", "LANGSMITH_TRACING": "false",
                   "LANGCHAIN_TRACING_V2": "false", "ANONYMIZED_TELEMETRY": "False"})

from assistant.config import Settings  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def make_settings(tmp_path):
    """Settings with a private data dir; keyword arguments override fields."""

    def make(**overrides) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        return Settings(**overrides)

    return make


@pytest.fixture(scope="session")
def indexed_settings(tmp_path_factory) -> Settings:
    """The real knowledge/ folder indexed once for the session, in a private data dir."""
    from assistant.indexing import ingest

    settings = Settings(data_dir=tmp_path_factory.mktemp("kb-data"))
    ingest(settings)
    return settings


def _wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` on 127.0.0.1 and a free port; stopped by its pid."""
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    assert exe, "the chroma command (from the chromadb package) is missing"
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "w")
    proc = subprocess.Popen([exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc=proc)
        yield ("127.0.0.1", port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
