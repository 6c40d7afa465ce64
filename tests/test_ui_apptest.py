"""The Streamlit app through `streamlit.testing.v1.AppTest`: every page, the real chain and index.

The chat reads the session-wide indexed copy of knowledge/ (read only); the library tests work on a
private data dir so uploads and deletions never touch the shared index or the repository.
"""
from __future__ import annotations

import html
import json
import os
import re

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, free_port

APP = ROOT / "ui" / "app.py"
FACT = "Le festival Zorglub de Tromsø a accueilli exactement 4321 visiteurs en 2031.\n"


@pytest.fixture
def app_env(indexed_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(indexed_settings.data_dir))
    monkeypatch.setenv("LANGSMITH_TRACING_V2", "false")
    monkeypatch.setenv("ASSISTANT_EVAL_REPORTS", str(tmp_path / "no-reports"))
    return indexed_settings


def start(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def last_reply(at: AppTest):
    return at.chat_message[-1]


def texts(block) -> str:
    """Everything a person can read in a block (markdown, alerts, captions)."""
    parts = [m.value for m in block.markdown] + [m.value for m in block.caption]
    parts += [a.value for kind in ("error", "warning", "info", "success") for a in getattr(block, kind)]
    return "\n".join(parts + [visible(p) for p in parts])


def visible(source: str) -> str:
    """What a person reads from a markdown body: tags dropped, character references and backslash escapes
    resolved."""
    return html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", re.sub(r"<[^>]+>", "", source)))


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception
    everything = texts(at.main) + texts(at.sidebar)
    assert "Traceback" not in everything and 'File "' not in everything


# --- chat -------------------------------------------------------------------------------------------------
def test_cited_answer_with_source_cards_conflict_and_details(app_env):
    at = ask(start(), "Combien de pays ont signé la déclaration ?")
    reply = last_reply(at)
    assert reply.name == "assistant"
    body = texts(reply)
    assert "61" in body and "58" in body
    assert 'class="cite-ref" href="#cite-a0-1"' in body  # inline markers: links to their source cards
    cards = [m.value for m in reply.markdown if 'mark class="cite"' in m.value]
    assert cards, "a source card shows the cited span highlighted"
    assert "sommet-ia-paris-declaration.txt" in body and "chine-rejette-critiques-vance.txt" in body
    conflicts = [visible(m.value) for m in reply.markdown if 'class="conflict"' in m.value]
    assert any("disagree" in c and "61" in c and "58" in c for c in conflicts)
    assert [e.label for e in reply.expander if e.label == "Read in context"]
    details = [e for e in at.sidebar.expander if e.label.startswith("#1 · ")]
    assert details and "Timings" in texts(details[0])
    scores = details[0].dataframe[0].value
    assert {"fused", "dense", "BM25"} <= set(scores.columns) and len(scores) >= 2
    assert_no_traceback(at)


def test_history_is_per_session_and_new_conversation_clears_it(app_env):
    at = ask(start(), "Combien de pays ont signé la déclaration ?")
    ask(at, "Et les États-Unis ?")
    chat = at.session_state["chat"]
    assert [e["question"] for e in chat] == ["Combien de pays ont signé la déclaration ?", "Et les États-Unis ?"]
    assert "déclaration" in chat[1]["answer"].standalone_question  # the follow-up was read with the history
    assert "Searched as" in texts(next(e for e in at.sidebar.expander if e.label.startswith("#2 · ")))
    other = start()  # another browser tab: a session of its own
    assert "chat" not in other.session_state or not other.session_state["chat"]
    next(b for b in at.sidebar.button if b.label == "New conversation").click().run()
    assert at.session_state["chat"] == []
    assert not [m for m in at.chat_message if m.name == "user"]


def test_declined_answer_looks_different(app_env):
    at = ask(start(), "Who won the 2024 Nobel Prize in Physics?")
    reply = last_reply(at)
    assert any("Not in the sources" in i.value for i in reply.info)
    assert not [m for m in reply.markdown if 'mark class="cite"' in m.value]
    assert_no_traceback(at)


def test_dead_llm_endpoint_is_a_readable_error(app_env, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-123")
    monkeypatch.setenv("ASSISTANT_LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("ASSISTANT_LLM_TIMEOUT", "5")
    at = start()
    assert "openai" in texts(at.sidebar) and "LLM configured" in texts(at.sidebar)
    ask(at, "Combien de pays ont signé la déclaration ?")
    errors = [visible(e.value) for e in last_reply(at).error]
    assert errors and all(len(e) < 700 and "\n" not in e for e in errors)
    assert "Internal error" not in errors[0] and "127.0.0.1" in errors[0]  # says which endpoint failed
    assert "sk-test-not-a-real-key-123" not in texts(at.main) + texts(at.sidebar)
    assert_no_traceback(at)


def test_empty_question_is_a_message(app_env):
    at = ask(start(), "   ")
    assert any("empty" in w.value for w in last_reply(at).warning)
    assert not at.session_state["chat"]


def test_unreachable_chroma_server_is_a_message(app_env, monkeypatch):
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("CHROMA_PORT", str(free_port()))
    at = start()
    sidebar = [visible(e.value) for e in at.sidebar.error]
    assert any("Vector store unavailable" in e and "chroma run" in e for e in sidebar), sidebar
    ask(at, "Combien de pays ont signé la déclaration ?")
    errors = [visible(e.value) for e in last_reply(at).error]
    assert errors and "Chroma server at 127.0.0.1" in errors[0] and "chroma run" in errors[0]
    at.switch_page("pages/library.py").run()
    assert at.error
    assert_no_traceback(at)


# --- library -------------------------------------------------------------------------------------------------
@pytest.fixture
def private_kb(app_env, monkeypatch, tmp_path):
    """An empty knowledge base 'uploads' in a private data dir (its folder: data/kbs/uploads/documents)."""
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASSISTANT_KB", "uploads")
    return tmp_path / "data" / "kbs" / "uploads" / "documents"


def upload(at: AppTest, name: str, data: bytes, mime: str = "text/plain") -> AppTest:
    at.file_uploader[0].set_value((name, data, mime)).run()
    next(b for b in at.button if b.label == "Add and index").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_upload_ask_delete_and_bad_uploads(private_kb):
    at = start("pages/library.py")
    assert any("no index yet" in i.value for i in at.info)

    upload(at, "../../festival-zorglub.txt", FACT.encode())  # path parts are stripped
    assert any("Added and indexed festival-zorglub.txt" in visible(s.value) for s in at.success)
    assert (private_kb / "festival-zorglub.txt").read_text(encoding="utf-8") == FACT
    assert "festival-zorglub.txt" in at.dataframe[0].value["file"].tolist()

    upload(at, "photo.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR")  # binary: refused, nothing lost
    assert any("refused" in e.value and "binary" in visible(e.value) for e in at.error)
    upload(at, "festival-zorglub.txt", b"Autre texte, autre contenu.")  # no silent overwrite
    assert any("already in the library" in visible(e.value) for e in at.error)
    assert (private_kb / "festival-zorglub.txt").read_text(encoding="utf-8") == FACT
    assert sorted(p.name for p in private_kb.iterdir()) == ["festival-zorglub.txt"]

    question = "Combien de visiteurs le festival Zorglub a-t-il accueillis ?"
    at.switch_page("pages/chat.py").run()
    reply = last_reply(ask(at, question))
    assert "4321" in texts(reply) and "festival-zorglub.txt" in texts(reply)

    at.switch_page("pages/library.py").run()
    next(b for b in at.button if b.label == "Re-index all").click().run()  # drops and rebuilds the collection
    assert [s.label for s in at.status if s.label.startswith("Indexed in")], [s.label for s in at.status]
    at.switch_page("pages/chat.py").run()  # an assistant kept from before would hold the dropped collection
    reply = last_reply(ask(at, question))
    assert not reply.error and "festival-zorglub.txt" in texts(reply)

    at.switch_page("pages/library.py").run()
    at.selectbox(key="delete_choice").set_value("festival-zorglub.txt")
    at.button(key="delete_button").click().run()
    assert any("Deleted festival-zorglub.txt" in visible(s.value) for s in at.success)
    assert not (private_kb / "festival-zorglub.txt").exists()

    at.switch_page("pages/chat.py").run()
    reply = last_reply(ask(at, question))
    assert "festival-zorglub.txt" not in texts(reply)  # no stale retriever: the passage is gone
    assert "4321" not in texts(reply)


def test_create_and_switch_knowledge_base(private_kb):
    at = start("pages/library.py")
    at.text_input[-1].set_value("Bad Name!")
    next(b for b in at.button if b.label == "Create and switch").click().run()
    assert any("invalid knowledge-base name" in visible(e.value) for e in at.error)
    at.text_input[-1].set_value("notes")
    next(b for b in at.button if b.label == "Create and switch").click().run()
    assert at.session_state["kb"] == "notes"
    assert any("Created knowledge base notes" in visible(s.value) for s in at.success)
    assert (private_kb.parent.parent / "notes" / "documents").is_dir()
    # AppTest drops what app.py draws before st.navigation once switch_page was used: look in a new session
    assert "notes" in start().sidebar.selectbox[0].options


# --- evals -----------------------------------------------------------------------------------------------------
def sample_report(flip: bool = False) -> dict:
    """A small report.json in the eval suite's format; `flip` makes q4 pass and q3 fail."""
    def row(qid, correct, lang, qtype, answer):
        return {"id": qid, "question": f"question {qid} ?", "lang": lang, "type": qtype, "answerable": True,
                "answer": answer, "declined": False, "error": None, "correct": correct, "outcome": "answered",
                "citations": [{"number": 1, "source": "sommet-ia-paris-declaration.txt", "quote": answer, "valid": True}],
                "hit": 1.0 if correct else 0.0, "rr": 1.0, "latency_ms": 120.0, "citations_valid": 1, "citations_total": 1}

    agg = {"n": 2, "accuracy": 0.5, "hit_at_k": 0.5, "citation_validity": 1.0}
    return {
        "summary": {"n": 4, "n_answerable": 4, "n_unanswerable": 0, "accuracy": 0.75, "answer_accuracy": 0.75,
                    "refusal_accuracy": 1.0, "hit_at_k": 0.75, "recall_at_k": 0.75, "mrr": 0.7, "context_hit": 0.75,
                    "citation_validity": 1.0, "citation_correctness": 0.75, "false_refusal_rate": 0.0,
                    "latency_p50_ms": 120.0, "latency_p95_ms": 150.0, "errors": 0,
                    "slices": {"lang": {"fr": {**agg, "n": 3}, "en": {**agg, "n": 1}},
                               "type": {"factual": agg, "numeric": agg}}},
        "config": {"dataset": "evals/paris_summit.jsonl", "kb": "default", "generator": "extractive", "k": 5,
                   "date": "2025-02-12T10:00:00+00:00"},
        "results": [row("q1", True, "fr", "factual", "61 pays ont signé [1]."), row("q2", True, "en", "factual", "Yes [1]."),
                    row("q3", not flip, "fr", "numeric", "58 pays [1]."), row("q4", flip, "fr", "numeric", "Paris [1].")],
    }


@pytest.fixture
def reports(app_env, monkeypatch, tmp_path):
    import ui.evals_data

    folder = tmp_path / "reports"
    folder.mkdir()
    monkeypatch.setattr(ui.evals_data, "DEFAULT_DIR", folder)
    return folder


def test_evals_page_without_a_report_says_make_eval(reports):
    at = start("pages/evals.py")
    assert any("make eval" in i.value for i in at.info)
    assert_no_traceback(at)


def test_evals_page_shows_metrics_charts_questions_and_comparison(reports):
    for name, flip in (("before", False), ("after", True)):
        (reports / name).mkdir()
        (reports / name / "report.json").write_text(json.dumps(sample_report(flip)), encoding="utf-8")
    os.utime(reports / "before" / "report.json", (1_700_000_000, 1_700_000_000))  # "after" is the newest
    at = start("pages/evals.py")
    assert {m.label for m in at.metric} >= {"Accuracy", "Hit@k", "Citation validity"}
    assert next(m for m in at.metric if m.label == "Accuracy").value == "0.750"
    assert len(at.get("vega_lite_chart")) >= 3  # metrics + one per slice
    questions = at.dataframe[-1].value
    assert list(questions["id"]) == ["q1", "q2", "q3", "q4"] and "citations" in questions

    at.selectbox[-1].select_index(1).run()  # compare with the other run
    flipped = at.dataframe[0].value
    assert dict(zip(flipped["id"], flipped["now"])) == {"q3": "broken", "q4": "fixed"}
    assert any("2** questions changed" in m.value for m in at.markdown)
    assert_no_traceback(at)


def test_evals_page_refuses_a_broken_report(reports):
    (reports / "broken").mkdir()
    (reports / "broken" / "report.json").write_text("{not json", encoding="utf-8")
    at = start("pages/evals.py")
    assert any("cannot read" in visible(e.value) for e in at.error)
    assert_no_traceback(at)


def test_top_k_slider_sets_the_passages_retrieved(app_env):
    at = start()
    at.sidebar.slider(key="_top_k").set_value(3).run()
    ask(at, "Combien de pays ont signé la déclaration ?")
    assert len(at.session_state["chat"][-1]["answer"].passages) == 3
    assert at.sidebar.slider(key="_top_k").value == 3


# --- trust: document text is data, long questions, Chroma down -------------------------------------------------
def test_hostile_document_text_is_shown_as_text(app_env, monkeypatch, tmp_path):
    from test_browser import HOSTILE_QUESTION, hostile_documents

    from assistant.config import Settings
    from assistant.indexing import ingest

    docs, data = tmp_path / "hostile", tmp_path / "data"
    hostile_documents(docs, 9)
    ingest(Settings(data_dir=data, knowledge_dir=docs))
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(data))
    monkeypatch.setenv("ASSISTANT_KNOWLEDGE_DIR", str(docs))
    at = ask(start(), HOSTILE_QUESTION)
    reply = last_reply(at)
    bodies = [m.value for m in reply.markdown]
    shown = "\n".join(visible(b) for b in bodies)
    for literal in ("**bold**", ":warning:", "<b>html</b>", "[/]", ":material/home:", "a -> b", "rapport [1] du port",
                    "![pixel](http://127.0.0.1:9/pixel.png?leak=conversation)", "[x](http://127.0.0.1:9/link)"):
        assert literal in shown, literal
    for body in bodies:  # what the browser gets: no markup of the document's, only our tags
        tags = re.findall(r"<(/?[a-z]+)", body)
        assert set(tags) <= {"div", "/div", "span", "/span", "a", "/a", "b", "/b", "mark", "/mark", "br", "ul", "/ul",
                             "li", "/li", "code", "/code"}, body
        assert "](" not in body and ":warning:" not in body and "**" not in body and "<img" not in body
        assert all(a.startswith('<a class="cite-ref" href="#cite-') for a in re.findall(r"<a [^>]*>", body))
        assert not re.search(r"<b>html", body)
    assert all("](" not in c.value and ":warning:" not in c.value for c in reply.caption)
    labels = [e.label for e in at.sidebar.expander]
    assert labels and all("[" not in label and ":" not in label.split("·", 1)[1] for label in labels)
    assert_no_traceback(at)


def test_too_long_question_is_put_back_with_the_limit(app_env, monkeypatch):
    monkeypatch.setenv("ASSISTANT_MAX_QUESTION_CHARS", "60")
    at = start()
    question = "Combien de pays ont signé la déclaration du sommet de Paris sur l'IA, et lesquels ?"
    assert len(question) > 60
    ask(at, question)
    warnings = [visible(w.value) for w in at.warning]
    assert any(f"{len(question)} characters" in w and "the limit is 60" in w for w in warnings), warnings
    assert at.chat_input[0].proto.value == question  # back in the box, to be shortened
    assert not at.session_state["chat"]
    ask(at, "Combien de pays ont signé la déclaration ?")  # a shorter one goes through
    assert "61" in texts(last_reply(at))


@pytest.fixture
def own_chroma_server(tmp_path):
    """A `chroma run` of this test's own, that the test may stop."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from conftest import _wait_http

    exe = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    port = free_port()
    log = open(tmp_path / "chroma.log", "w")
    proc = subprocess.Popen([exe, "run", "--path", str(tmp_path / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc=proc)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        log.close()


def test_chroma_server_stopping_mid_session_says_how_to_start_it(app_env, own_chroma_server, monkeypatch, tmp_path):
    from assistant.config import Settings
    from assistant.indexing import ingest

    port, proc = own_chroma_server
    monkeypatch.setenv("CHROMA_HOST", "127.0.0.1")
    monkeypatch.setenv("CHROMA_PORT", str(port))
    monkeypatch.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    ingest(Settings())
    at = ask(start(), "Combien de pays ont signé la déclaration ?")
    assert "61" in texts(last_reply(at))
    proc.terminate()
    proc.wait(10)
    ask(at, "Qui est Keir Starmer ?")
    errors = [visible(e.value) for e in last_reply(at).error]
    assert errors and "Internal error" not in errors[0] and "ConnectError" not in errors[0]
    assert f"Chroma server at 127.0.0.1:{port}" in errors[0] and "chroma run" in errors[0] and "CHROMA_HOST" in errors[0]
    assert_no_traceback(at)

