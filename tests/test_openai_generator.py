"""The `openai` generator against a real HTTP server on 127.0.0.1 speaking the chat-completions protocol.

The server (stdlib http.server in a thread) answers with JSON or, for `stream: true`, server-sent events;
each test scripts its reply from the request it receives, or makes it fail (500, timeout, garbage).
"""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import SecretStr

from assistant.chain import Assistant
from assistant.models import Answer, Turn

KEY = "sk-test-SECRET-4242-never-shown"
SUMMIT = "sommet-ia-paris-declaration.txt"
VANCE = "chine-rejette-critiques-vance.txt"


class FakeLLM:
    """Shared state between a test and the server thread."""

    def __init__(self):
        self.requests: list[dict] = []
        self.mode = "ok"  # ok | 500 | slow | garbage | bad-stream | hang | stall | drip
        self.reply = lambda body: "Réponse [1]."
        self.release = threading.Event()  # set at teardown: hung handlers return
        self.dripped = 0  # chunks a "drip" stream managed to send before the client left

    @staticmethod
    def passages(body: dict) -> dict[int, str]:
        """Passage number -> fenced text, from the user message of a request."""
        user = body["messages"][-1]["content"]
        return {int(n): t for n, t in re.findall(r"<<<PASSAGE (\d+)>>>\n(.*?)\n<<<END PASSAGE \1>>>", user, re.S)}

    def number_of(self, body: dict, needle: str) -> int:
        return next(n for n, text in self.passages(body).items() if needle in text)


def _handler(llm: FakeLLM):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            body["_authorization"] = self.headers.get("Authorization", "")
            llm.requests.append(body)
            if llm.mode == "500":
                return self._send(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
            if llm.mode == "slow":
                time.sleep(3)
                return self._send(200, b"{}")
            if llm.mode == "garbage":
                return self._send(200, b"<html>this is not json")
            if llm.mode == "no-json" and "response_format" in body:  # a server without structured output
                return self._send(400, b'{"error": {"message": "response_format is not supported", "type": "invalid_request_error"}}')
            if llm.mode == "hang":  # accepts the request and never answers
                llm.release.wait(120)
                return None
            if llm.mode in ("stall", "drip") and body.get("stream"):
                return self._slow_stream(body)
            text = llm.reply(body)
            if not body.get("stream"):
                payload = {
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                return self._send(200, json.dumps(payload).encode())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
            for i, piece in enumerate(pieces):
                chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": piece} if i else {"role": "assistant",
                                                                                          "content": piece},
                                      "finish_reason": None}]}
                data = "data: {not json\n\n" if llm.mode == "bad-stream" and i == 1 else f"data: {json.dumps(chunk)}\n\n"
                self.wfile.write(data.encode())
                self.wfile.flush()
            end = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
            self.wfile.flush()

        def _slow_stream(self, body: dict) -> None:
            """"stall": two chunks, then silence; "drip": one chunk every 0.3 s for 18 s."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            count = 2 if llm.mode == "stall" else 60
            for i in range(count):
                delta = {"role": "assistant", "content": "Zhang "} if i == 0 else {"content": "Guoqing "}
                chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                         "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                try:
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                except OSError:  # the client gave up and closed the connection
                    return
                llm.dripped += 1
                if llm.mode == "drip" and llm.release.wait(0.3):
                    return
            if llm.mode == "stall":
                llm.release.wait(120)
                return
            end = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                   "choices": [{"index": 0, "delta": {"content": "[1]."}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
            self.wfile.flush()

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that timed out and left: expected here
        pass


@pytest.fixture
def fake_llm():
    llm = FakeLLM()
    server = QuietServer(("127.0.0.1", 0), _handler(llm))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    llm.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield llm
    finally:
        llm.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_assistant(indexed_settings, fake_llm):
    def make(**overrides) -> Assistant:
        values = {"generator": "auto", "openai_base_url": fake_llm.url, "openai_api_key": SecretStr(KEY),
                  "llm_model": "fake-model", "llm_timeout": 1.0, "llm_max_retries": 0}
        values.update(overrides)
        return Assistant(indexed_settings.model_copy(update=values))

    return make


def test_request_carries_fenced_numbered_passages_and_rules(make_assistant, fake_llm):
    fake_llm.reply = lambda body: f"Zhang Guoqing a représenté Xi Jinping [{fake_llm.number_of(body, 'Zhang')}]."
    assistant = make_assistant()
    assert assistant.generator_name == "openai" and assistant.llm_configured and assistant.model_name == "fake-model"
    answer = assistant.ask("Qui a représenté Xi Jinping au sommet ?")
    body = fake_llm.requests[-1]
    assert body["model"] == "fake-model" and body["_authorization"] == f"Bearer {KEY}"
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    assert "DATA" in system and "never obey" in system and "[1]" in system and "French" in system
    assert "Les sources ne le disent pas" in system
    numbered = fake_llm.passages(body)
    assert list(numbered) == list(range(1, len(numbered) + 1)) and len(numbered) == len(answer.passages)
    assert f"source: {SUMMIT}" in user and "Question: Qui a représenté Xi Jinping au sommet ?" in user
    assert answer.error is None and not answer.declined
    assert answer.text == "Zhang Guoqing a représenté Xi Jinping [1]."
    assert answer.citations[0].source == SUMMIT and "Zhang Guoqing" in answer.citations[0].quote
    assert answer.generator == "openai" and answer.model == "fake-model"


def test_english_question_asks_for_english(make_assistant, fake_llm):
    fake_llm.reply = lambda body: f"Guo Jiakun is the spokesman [{fake_llm.number_of(body, 'Guo Jiakun')}]."
    answer = make_assistant().ask("Who is the spokesman of the Chinese foreign ministry?")
    assert "Answer in English" in fake_llm.requests[-1]["messages"][0]["content"]
    assert answer.citations and not answer.declined


def test_made_up_markers_are_stripped_and_counted(make_assistant, fake_llm):
    def reply(body):
        n = fake_llm.number_of(body, "Cependant, les États-Unis")
        return f"Les États-Unis et le Royaume-Uni ont refusé de signer le document [{n}][9]. Une invention [42]."

    fake_llm.reply = reply
    answer = make_assistant().ask("Quels pays ont refusé de signer la déclaration ?")
    assert "[9]" not in answer.text and "[42]" not in answer.text
    assert answer.removed_markers == 2
    assert [c.number for c in answer.citations] == [1]
    assert answer.unsupported_sentences == ["Une invention."] and "invention" not in answer.text


def test_streamed_answer_is_assembled(make_assistant, fake_llm):
    def reply(body):
        n = fake_llm.number_of(body, "Zhang")
        return f"Le représentant spécial du président Xi Jinping était Zhang Guoqing, vice-premier ministre [{n}]."

    fake_llm.reply = reply
    items = list(make_assistant().stream("Qui a représenté Xi Jinping au sommet ?"))
    chunks = [i for i in items if isinstance(i, str)]
    answer = items[-1]
    assert isinstance(answer, Answer) and answer.error is None
    assert len(chunks) > 5 and fake_llm.requests[-1]["stream"] is True
    assert "".join(chunks).startswith("Le représentant spécial") and "Zhang Guoqing" in "".join(chunks)
    assert answer.text.startswith("Le représentant spécial") and answer.text.endswith("[1].")
    assert answer.citations[0].source == SUMMIT and answer.citations[0].supported


def test_unsupported_answer_becomes_a_decline(make_assistant, fake_llm):
    fake_llm.reply = lambda body: "La France a annoncé 109 milliards d'euros pour l'IA [1]."
    answer = make_assistant().ask("Quel montant la France a-t-elle annoncé pour l'IA ?")
    assert answer.declined and answer.citations == [] and "109" not in answer.text
    assert answer.unsupported_sentences == ["La France a annoncé 109 milliards d'euros pour l'IA."]


def test_not_in_the_sources_reply_is_a_decline(make_assistant, fake_llm):
    fake_llm.reply = lambda body: "Les sources ne le disent pas : la réponse à cette question ne figure pas dans les documents."
    answer = make_assistant().ask("Quel montant la France a-t-elle annoncé pour l'IA ?")
    assert answer.declined and answer.citations == [] and answer.error is None


def test_conflict_left_out_by_the_model_is_added_with_both_citations(make_assistant, fake_llm):
    fake_llm.reply = lambda body: f"61 pays ont signé la déclaration [{fake_llm.number_of(body, '61 pays')}]."
    answer = make_assistant().ask("Combien de pays ont signé la déclaration ?")
    assert answer.text.startswith("Les sources divergent") and "58" in answer.text
    assert len(answer.conflicts) == 1
    sources = {c.number: c.source for c in answer.citations}
    assert {sources[v.citation] for v in answer.conflicts[0].values} == {SUMMIT, VANCE}


def test_follow_up_rewritten_by_the_llm(make_assistant, fake_llm):
    def reply(body):
        if "standalone" in body["messages"][0]["content"]:
            return "Les États-Unis ont-ils signé la déclaration du sommet de Paris ?"
        return f"Non, les États-Unis ont refusé de signer [{fake_llm.number_of(body, 'Cependant, les États-Unis')}]."

    fake_llm.reply = reply
    history = [Turn(question="Combien de pays ont signé la déclaration ?", answer="61 ou 58.")]
    answer = make_assistant().ask("Et les États-Unis, l'ont-ils signée ?", history)
    assert answer.standalone_question == "Les États-Unis ont-ils signé la déclaration du sommet de Paris ?"
    assert len(fake_llm.requests) == 2 and answer.citations


@pytest.mark.parametrize(
    "mode,expected",
    [("500", "HTTP 500"), ("slow", "did not answer within"), ("garbage", "malformed response")],
)
def test_failures_give_clear_errors_without_the_key(make_assistant, fake_llm, mode, expected):
    fake_llm.mode = mode
    assistant = make_assistant(llm_timeout=0.5)
    t0 = time.perf_counter()
    answer = assistant.ask("Qui a représenté Xi Jinping au sommet ?")
    assert time.perf_counter() - t0 < 10
    assert answer.error and expected in answer.error and fake_llm.url in answer.error
    assert KEY not in answer.error and "Traceback" not in answer.error
    assert KEY not in answer.model_dump_json()
    streamed = list(assistant.stream("Qui a représenté Xi Jinping au sommet ?"))
    assert isinstance(streamed[-1], Answer) and streamed[-1].error and KEY not in streamed[-1].error


def test_malformed_stream_gives_a_clear_error(make_assistant, fake_llm):
    fake_llm.mode = "bad-stream"
    fake_llm.reply = lambda body: "Une réponse assez longue pour plusieurs morceaux [1]."
    items = list(make_assistant().stream("Qui a représenté Xi Jinping au sommet ?"))
    assert isinstance(items[-1], Answer) and items[-1].error and "malformed" in items[-1].error


def test_transient_500_is_retried_with_backoff(make_assistant, fake_llm):
    fake_llm.mode = "500"
    answer = make_assistant(llm_max_retries=1).ask("Qui a représenté Xi Jinping au sommet ?")
    assert answer.error and "HTTP 500" in answer.error
    assert len(fake_llm.requests) == 2  # one retry


def test_unreachable_endpoint(indexed_settings):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = indexed_settings.model_copy(update={
        "generator": "openai", "openai_base_url": f"http://127.0.0.1:{port}/v1",
        "openai_api_key": SecretStr(KEY), "llm_timeout": 1.0, "llm_max_retries": 0})
    answer = Assistant(settings).ask("Qui a représenté Xi Jinping au sommet ?")
    assert answer.error and "unreachable" in answer.error and KEY not in answer.error


def test_empty_question_makes_no_call(make_assistant, fake_llm):
    answer = make_assistant().ask("  \n ")
    assert answer.error and "empty" in answer.error
    assert fake_llm.requests == []
    assert make_assistant().ask("Write a poem about the summit.").declined and fake_llm.requests == []


def test_chat_goes_on_after_an_error(make_assistant, fake_llm):
    assistant = make_assistant()
    fake_llm.mode = "500"
    assert assistant.ask("Qui a représenté Xi Jinping au sommet ?").error
    fake_llm.mode = "ok"
    fake_llm.reply = lambda body: f"Zhang Guoqing [{fake_llm.number_of(body, 'Zhang')}]."
    assert assistant.ask("Qui a représenté Xi Jinping au sommet ?").error is None


def test_passages_trimmed_to_the_context_budget(make_assistant, fake_llm):
    fake_llm.reply = lambda body: "Zhang Guoqing [1][8]."
    answer = make_assistant(llm_max_context_tokens=1200).ask("Qui a représenté Xi Jinping au sommet ?")
    shown = fake_llm.passages(fake_llm.requests[-1])
    assert 0 < len(shown) < len(answer.passages)
    total = sum(len(m["content"]) for m in fake_llm.requests[-1]["messages"])
    assert total / 4 <= 1200
    assert answer.removed_markers == 1  # [8] was never shown to the model


# --- one time budget per question (ASSISTANT_LLM_TIMEOUT covers every call and retry) ------------------
def _watched(call, limit: float = 60.0):
    """Run `call` in a thread; fail (rather than hang the suite) if it has not returned after `limit` s.
    The limit is a guard against a hang, not a speed assertion: the budgets below are 2 s."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", call()), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the chain did not return within {limit} s"
    return box["result"]


def _timed_out(answer, budget: str = "2") -> None:
    assert isinstance(answer, Answer) and answer.error, answer
    assert f"did not answer within {budget} s" in answer.error, answer.error
    assert "retries included" in answer.error and "ASSISTANT_LLM_TIMEOUT" in answer.error
    assert KEY not in answer.error


def test_hung_endpoint_gets_one_request_within_the_budget(make_assistant, fake_llm):
    """A server that accepts and never answers: the budget runs out once, no retry follows it
    (before: each of the 1 + 2 retries waited a full timeout, 3 requests and 3 x the wait)."""
    fake_llm.mode = "hang"
    assistant = make_assistant(llm_timeout=2.0, llm_max_retries=2)
    answer = _watched(lambda: assistant.ask("Qui a représenté Xi Jinping au sommet ?"))
    assert len(fake_llm.requests) == 1
    _timed_out(answer)
    streamed = _watched(lambda: list(assistant.stream("Qui a représenté Xi Jinping au sommet ?")))
    _timed_out(streamed[-1])
    assert len(fake_llm.requests) == 2 and not [s for s in streamed if isinstance(s, str)]


def test_hung_rewrite_spends_the_same_budget(make_assistant, fake_llm):
    """The follow-up rewrite is the first call of the question: when it hangs, the answer is not even
    asked for (before: 3 rewrite requests, then 3 answer requests)."""
    fake_llm.mode = "hang"
    assistant = make_assistant(llm_timeout=2.0, llm_max_retries=2)
    history = [Turn(question="Combien de pays ont signé la déclaration ?", answer="61 ou 58.")]
    answer = _watched(lambda: assistant.ask("Et les États-Unis, l'ont-ils signée ?", history))
    assert len(fake_llm.requests) == 1 and "standalone" in fake_llm.requests[0]["messages"][0]["content"]
    _timed_out(answer)


def test_stream_that_stalls_mid_way_ends_within_the_budget(make_assistant, fake_llm):
    fake_llm.mode = "stall"
    items = _watched(lambda: list(make_assistant(llm_timeout=2.0, llm_max_retries=2).stream(
        "Qui a représenté Xi Jinping au sommet ?")))
    _timed_out(items[-1])
    assert "Zhang" in "".join(i for i in items if isinstance(i, str))  # what came was shown as it came
    assert len(fake_llm.requests) == 1  # a stream that has begun is not retried


def test_stream_that_drips_forever_is_cut_at_the_budget(make_assistant, fake_llm):
    """A server that keeps sending a little (each read succeeds) cannot hold the question past its budget:
    the client leaves and closes the connection long before the 60 chunks of the drip are sent."""
    fake_llm.mode = "drip"
    items = _watched(lambda: list(make_assistant(llm_timeout=2.0).stream("Qui a représenté Xi Jinping au sommet ?")))
    time.sleep(1.0)  # let the server notice the closed connection
    assert fake_llm.dripped < 60
    _timed_out(items[-1])


# --- structured answers (ASSISTANT_LLM_OUTPUT=json_schema) ------------------------------------------------
def _json(sentences, in_sources=True) -> str:
    return json.dumps({"sentences": [{"text": t, "passages": p, "quote": q} for t, p, q in sentences],
                       "in_sources": in_sources}, ensure_ascii=False)


def test_json_schema_request_and_quote_checked_answer(make_assistant, fake_llm):
    def reply(body):
        n = fake_llm.number_of(body, "Zhang Guoqing")
        return _json([("Zhang Guoqing a représenté Xi Jinping.", [n], "Zhang Guoqing"),
                      ("Il a aussi gagné le prix Nobel.", [n], "lauréat du prix Nobel de la paix"),  # not in it
                      ("Zhang Guoqing est vice-premier ministre.", [n, 9], "vice-premier ministre")])

    fake_llm.reply = reply
    answer = make_assistant(llm_output="json_schema").ask("Qui a représenté Xi Jinping au sommet ?")
    body = fake_llm.requests[-1]
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["sentences", "in_sources"]
    assert "quote" in fake_llm.requests[-1]["messages"][0]["content"]
    assert answer.error is None and not answer.declined
    assert "Nobel" not in answer.text and answer.unsupported_sentences == ["Il a aussi gagné le prix Nobel."]
    assert answer.removed_markers == 1  # passage 9 was never shown
    assert answer.citations and all(c.source == SUMMIT and c.supported for c in answer.citations)


def test_json_in_sources_set_wrongly_cannot_show_an_unsupported_claim(make_assistant, fake_llm):
    fake_llm.reply = lambda body: _json([("La France a annoncé 109 milliards d'euros pour l'IA.", [1],
                                          "109 milliards d'euros")], in_sources=True)
    answer = make_assistant(llm_output="json_schema").ask("Quel montant la France a-t-elle annoncé pour l'IA ?")
    assert answer.declined and not answer.citations and "109" not in answer.text
    assert answer.unsupported_sentences == ["La France a annoncé 109 milliards d'euros pour l'IA."]
    # and a model that says "not in the sources" declines even when it wrote a sentence
    fake_llm.reply = lambda body: _json([("Zhang Guoqing a représenté Xi Jinping.", [fake_llm.number_of(body, "Zhang")],
                                          "Zhang Guoqing")], in_sources=False)
    assert make_assistant(llm_output="json_schema").ask("Qui a représenté Xi Jinping au sommet ?").declined


def test_json_that_is_not_json_is_a_clear_error(make_assistant, fake_llm):
    fake_llm.reply = lambda body: "Zhang Guoqing [1]."
    answer = make_assistant(llm_output="json_schema").ask("Qui a représenté Xi Jinping au sommet ?")
    assert answer.error and "not the JSON asked for" in answer.error and KEY not in answer.error


def test_server_refusing_response_format_falls_back_to_text(make_assistant, fake_llm):
    fake_llm.mode = "no-json"
    fake_llm.reply = lambda body: f"Zhang Guoqing a représenté Xi Jinping [{fake_llm.number_of(body, 'Zhang')}]."
    assistant = make_assistant(llm_output="json_schema")
    answer = assistant.ask("Qui a représenté Xi Jinping au sommet ?")
    assert answer.error is None and answer.citations and answer.text.endswith("[1].")
    assert "response_format" in fake_llm.requests[0] and "response_format" not in fake_llm.requests[1]
    assistant.ask("Qui a représenté Xi Jinping au sommet ?")  # remembered: no second refused request
    assert len(fake_llm.requests) == 3 and "response_format" not in fake_llm.requests[2]


def test_uncited_statements_of_the_model_are_dropped_and_listed(make_assistant, fake_llm):
    def reply(body):
        n = fake_llm.number_of(body, "Zhang")
        return f"Zhang Guoqing a représenté Xi Jinping [{n}]. La Chine a signé la déclaration de Paris."

    fake_llm.reply = reply
    answer = make_assistant().ask("Qui a représenté Xi Jinping au sommet ?")
    assert answer.text == "Zhang Guoqing a représenté Xi Jinping [1]."
    assert answer.unsupported_sentences == ["La Chine a signé la déclaration de Paris."]


def test_json_sentence_holding_two_sentences_shows_only_the_cited_one(make_assistant, fake_llm):
    """Found on the gold set with SmolLM2: a JSON "text" of two sentences got its markers after the second,
    and the first, uncited, was shown on its lexical overlap alone."""
    def reply(body):
        n = fake_llm.number_of(body, "Zhang Guoqing")
        return _json([("La Chine a signé la déclaration de Paris. Zhang Guoqing a représenté Xi Jinping.", [n],
                       "Zhang Guoqing")])

    fake_llm.reply = reply
    answer = make_assistant(llm_output="json_schema").ask("Qui a représenté Xi Jinping au sommet ?")
    assert answer.text == "Zhang Guoqing a représenté Xi Jinping [1]."
    assert answer.unsupported_sentences == ["La Chine a signé la déclaration de Paris."]
