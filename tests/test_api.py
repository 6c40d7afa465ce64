"""The HTTP API: a real `assistant serve` on a free loopback port (started and stopped by pid), driven
by the official `openai` client, LangChain's `ChatOpenAI` and plain HTTP.

The server answers from a private data dir holding a copy of knowledge/ (uploads to `default` land in
that copy, never in the checkout).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from assistant.api import openai_format as oa
from assistant.config import Settings
from conftest import KNOWLEDGE, ROOT, _wait_http, free_port

SUMMIT = "sommet-ia-paris-declaration.txt"
VANCE = "chine-rejette-critiques-vance.txt"
KEY = "test-key-7f3a"  # a throwaway key for the auth tests


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log_path: Path):
        self.url, self.proc, self.log_path = url, proc, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _env(data: Path, knowledge: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"ASSISTANT_DATA_DIR": str(data), "ASSISTANT_KNOWLEDGE_DIR": str(knowledge),
                "ASSISTANT_GENERATOR": "extractive", "PYTHONPATH": str(ROOT)})
    env.pop("ASSISTANT_API_KEY", None)
    env.update(extra)
    return env


def start_server(data: Path, knowledge: Path, log_path: Path, **extra: str) -> Server:
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--port", str(port)], cwd=ROOT,
                            env=_env(data, knowledge, **extra), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    server = Server(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        _wait_http(server.url + "/health", timeout=180, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"the server did not start:\n{server.log()}") from None
    return server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A copy of knowledge/ indexed into a private data dir."""
    from assistant.indexing import ingest

    root = tmp_path_factory.mktemp("api")
    knowledge = root / "knowledge"
    shutil.copytree(KNOWLEDGE, knowledge)
    data = root / "data"
    ingest(Settings(data_dir=data, knowledge_dir=knowledge))
    return root, data, knowledge


@pytest.fixture(scope="module")
def server(corpus):
    root, data, knowledge = corpus
    srv = start_server(data, knowledge, root / "server.log")
    yield srv
    srv.stop()
    assert srv.proc.returncode is not None


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=300) as c:
        yield c


def ask(client, question: str, history: list[tuple[str, str]] = (), model: str = "default"):
    messages = []
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": question})
    return client.chat.completions.create(model=model, messages=messages)


def ask_streamed(client, question: str, model: str = "default"):
    """(joined content, the final chunk's grounding, number of chunks)."""
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}], stream=True)
    text, final, n = "", None, 0
    for chunk in stream:
        n += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.choices and chunk.choices[0].finish_reason:
            assert chunk.choices[0].finish_reason == "stop"
            final = (chunk.model_extra or {}).get("grounding")
    return text, final, n


def check_cited(content: str, grounding: dict, expected: str, source: str) -> None:
    assert expected in content, content
    assert not grounding["declined"]
    citations = grounding["citations"]
    assert citations and source in {c["source"] for c in citations}
    answer_part, _, sources_part = content.partition(oa.SOURCES_RULE)
    for c in citations:  # every marker resolves to a citation whose quote comes from its passage
        assert f"[{c['number']}]" in answer_part
        assert c["quote"] in c["passage_text"]
        assert f"- [{c['number']}] " in sources_part and c["source"] in sources_part
    assert {"retrieve", "generate", "verify", "total"} <= grounding["timings"].keys()


# --- the OpenAI-compatible route ------------------------------------------------------------------------
def test_health_and_models(client, http):
    assert http.get("/health").json()["status"] == "ok"
    assert [m.id for m in client.models.list()] == ["default"]
    assert client.models.retrieve("default").id == "default"


@pytest.mark.parametrize("question,expected,source", [
    ("Qui a représenté Xi Jinping au sommet ?", "Zhang Guoqing", SUMMIT),
    ("Who represented Xi Jinping at the summit?", "Zhang Guoqing", SUMMIT),
])
def test_answers_with_citations_plain_and_streamed(client, question, expected, source):
    reply = ask(client, question)
    content, grounding = reply.choices[0].message.content, reply.model_extra["grounding"]
    check_cited(content, grounding, expected, source)
    assert reply.model == "default" and reply.choices[0].finish_reason == "stop"
    assert (content.startswith("According to the sources") if question.startswith("Who")
            else content.startswith("D'après les sources"))
    streamed, final, chunks = ask_streamed(client, question)
    assert chunks >= 4  # role, several text chunks, the final one
    assert streamed == content
    assert final["citations"] == grounding["citations"]


def test_conflicting_figures(client):
    reply = ask(client, "Combien de pays ont signé la déclaration ?")
    content, grounding = reply.choices[0].message.content, reply.model_extra["grounding"]
    assert "61" in content and "58" in content and "divergent" in content
    assert len(grounding["conflicts"]) == 1
    values = {v["value"]: v for v in grounding["conflicts"][0]["values"]}
    assert set(values) == {"61", "58"}
    by_number = {c["number"]: c for c in grounding["citations"]}
    assert by_number[values["61"]["citation"]]["source"] == SUMMIT
    assert by_number[values["58"]["citation"]]["source"] == VANCE


def test_decline(client):
    reply = ask(client, "Who won the 2024 Nobel Prize in Physics?")
    content, grounding = reply.choices[0].message.content, reply.model_extra["grounding"]
    assert grounding["declined"] and grounding["citations"] == []
    assert content.startswith("The sources do not say") and oa.SOURCES_RULE not in content


def test_follow_up_with_history(client):
    first = ask(client, "Combien de pays ont signé la déclaration ?").choices[0].message.content
    reply = ask(client, "Et les États-Unis, l'ont-ils signée ?", history=[("Combien de pays ont signé la déclaration ?", first)])
    grounding = reply.model_extra["grounding"]
    assert "États-Unis" in grounding["standalone_question"] and "déclaration" in grounding["standalone_question"]
    check_cited(reply.choices[0].message.content, grounding, "États-Unis", SUMMIT)


def test_unknown_kb_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        ask(client, "Qui est Keir Starmer ?", model="no-such-kb")
    assert err.value.status_code == 404 and "no-such-kb" in err.value.body["message"]
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        ask(client, "Qui est Keir Starmer ?", model="Not A Valid Name!")


def test_too_long_question_is_413_with_the_cli_message(client, http):
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "Combien de pays ? " * 200)
    assert err.value.status_code == 413
    assert "too long" in err.value.body["message"] and "2,000" in err.value.body["message"]
    r = http.post("/v1/search", json={"query": "x" * 2500})
    assert r.status_code == 413 and "too long" in r.json()["error"]["message"]
    r = http.post("/v1/chat/completions", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                  headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_bad_requests_are_400_in_the_openai_shape(http):
    for body in ({"model": "default", "messages": []},
                 {"model": "default", "messages": [{"role": "assistant", "content": "hi"}]},
                 {"messages": [{"role": "user", "content": "hi"}]},
                 {"model": "default", "messages": [{"role": "user", "content": "   "}]}):
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()["error"]) >= {"message", "type", "code"}
    r = http.post("/v1/chat/completions", content=b"not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_raw_stream_is_sse_ending_with_done(http):
    body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": "Qui est Keir Starmer ?"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["grounding"]["citations"]
    assert all("grounding" not in c for c in chunks[:-1])


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="default", base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    reply = llm.invoke("Qui est Keir Starmer ?")
    assert "Premier ministre britannique" in reply.content and "[1]" in reply.content
    assert oa.SOURCES_RULE in reply.content and SUMMIT in reply.content
    streamed = "".join(chunk.content for chunk in llm.stream("Qui est Keir Starmer ?"))
    assert streamed == reply.content
    declined = llm.invoke("Quelle est la capitale de l'Australie ?")
    assert declined.content.startswith("Les sources ne")


# --- search, knowledge bases, documents ------------------------------------------------------------------
def test_search_has_the_fields_of_the_cli(http, corpus):
    root, data, knowledge = corpus
    r = http.post("/v1/search", json={"query": "Zhang Guoqing", "k": 3})
    assert r.status_code == 200
    passages = r.json()
    cli = subprocess.run([sys.executable, "-m", "assistant.cli", "search", "Zhang Guoqing", "-k", "3", "--json"],
                         cwd=ROOT, env=_env(data, knowledge), capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    expected = json.loads(cli.stdout)
    assert [p["chunk_id"] for p in passages] == [p["chunk_id"] for p in expected]
    assert [set(p) for p in passages] == [set(p) for p in expected]
    assert passages[0]["source"] == SUMMIT and "Zhang Guoqing" in passages[0]["text"]
    assert http.post("/v1/search", json={"query": "x", "kb": "nope"}).status_code == 404
    assert http.post("/v1/search", json={"query": "  "}).status_code == 400


def test_kbs_and_documents(http):
    kbs = http.get("/v1/kbs").json()
    default = next(k for k in kbs if k["name"] == "default")
    assert default["documents"] == 2 and default["passages"] > 0 and default["default"]
    docs = http.get("/v1/kbs/default/documents").json()
    assert {d["source"] for d in docs} == {SUMMIT, VANCE} and all(d["complete"] for d in docs)
    assert http.get("/v1/kbs/nope/documents").status_code == 404


def wait_job(http, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job_id)


LIGHTHOUSE = ("Le phare de Kerbrat\n\nLe phare de Kerbrat a été allumé pour la première fois en 1887. "
              "Sa lanterne est visible à trente-deux kilomètres par temps clair. Le gardien Yann Le Goff "
              "y a vécu pendant quarante ans.\n")


def test_upload_ask_delete(http, client):
    files = [("files", ("phare.txt", LIGHTHOUSE.encode(), "text/plain")),
             ("files", ("../evil.txt", b"escape", "text/plain")),
             ("files", ("image.png", b"\x89PNG....", "image/png"))]
    r = http.post("/v1/kbs/uploads/documents", files=files)
    assert r.status_code == 202, r.text
    body = r.json()
    by_name = {f["name"]: f for f in body["files"]}
    assert by_name["phare.txt"]["ok"] and by_name["phare.txt"]["changed"]
    assert by_name["evil.txt"]["ok"]  # path parts dropped: saved inside the folder under its base name
    assert not by_name["image.png"]["ok"] and "unsupported type" in by_name["image.png"]["message"]
    job = wait_job(http, body["job"]["id"])
    assert job["status"] == "done", job
    assert job["report"]["added"] == ["evil.txt", "phare.txt"]
    assert job["progress"]["done"] == job["progress"]["total"] == 2
    assert http.delete("/v1/kbs/uploads/documents/evil.txt").status_code == 200
    assert "uploads" in [m.id for m in client.models.list()]

    reply = ask(client, "En quelle année le phare de Kerbrat a-t-il été allumé ?", model="uploads")
    check_cited(reply.choices[0].message.content, reply.model_extra["grounding"], "1887", "phare.txt")

    r = http.delete("/v1/kbs/uploads/documents/phare.txt")
    assert r.status_code == 200, r.text
    assert http.get("/v1/kbs/uploads/documents").json() == []
    after = ask(client, "En quelle année le phare de Kerbrat a-t-il été allumé ?", model="uploads")
    assert after.model_extra["grounding"]["declined"] and "1887" not in after.choices[0].message.content
    assert http.delete("/v1/kbs/uploads/documents/phare.txt").status_code == 404


def test_default_kb_uploads_go_to_the_data_dir_and_shipped_documents_stay(http, corpus):
    """The Library page's rules through the API: knowledge/ is never written nor deleted from."""
    root, data, knowledge = corpus
    shipped = sorted(p.name for p in knowledge.iterdir())
    r = http.post("/v1/kbs/default/documents", files=[("files", ("phare.txt", LIGHTHOUSE.encode(), "text/plain"))])
    assert r.status_code == 202, r.text
    assert wait_job(http, r.json()["job"]["id"])["status"] == "done"
    assert sorted(p.name for p in knowledge.iterdir()) == shipped
    assert (data / "kbs" / "default" / "uploads" / "phare.txt").is_file()
    assert "phare.txt" in [d["source"] for d in http.get("/v1/kbs/default/documents").json()]
    # a shipped name is refused, a shipped document cannot be deleted
    article = next(n for n in shipped if n.endswith(".txt"))
    r = http.post("/v1/kbs/default/documents", files=[("files", (article, b"Other text entirely.", "text/plain"))])
    assert r.status_code == 400 and "ships with the application" in r.json()["error"]["message"]
    r = http.delete(f"/v1/kbs/default/documents/{article}")
    assert r.status_code == 403 and "read-only" in r.json()["error"]["message"]
    assert sorted(p.name for p in knowledge.iterdir()) == shipped
    assert http.delete("/v1/kbs/default/documents/phare.txt").status_code == 200
    assert not (data / "kbs" / "default" / "uploads" / "phare.txt").exists()


def test_refused_uploads_are_400_and_change_nothing(http):
    before = http.get("/v1/kbs/default/documents").json()
    r = http.post("/v1/kbs/default/documents", files=[("files", (".hidden.txt", b"x", "text/plain"))])
    assert r.status_code == 400 and "hidden" in r.json()["error"]["message"]
    r = http.post("/v1/kbs/default/documents", files=[("files", ("empty.txt", b"", "text/plain"))])
    assert r.status_code == 400 and "empty" in r.json()["error"]["message"]
    r = http.post("/v1/kbs/default/documents", data={"replace": "true"})
    assert r.status_code == 400
    too_big = b"a" * (21 * 1024 * 1024)  # max_upload_mb is 20
    r = http.post("/v1/kbs/default/documents", files=[("files", ("big.txt", too_big, "text/plain"))])
    assert r.status_code == 413
    assert http.get("/v1/kbs/default/documents").json() == before
    assert http.get("/v1/jobs/" + "0" * 32).status_code == 404


def test_store_or_llm_down_is_503_with_the_readable_message(corpus, tmp_path):
    root, data, knowledge = corpus
    closed = str(free_port())  # nothing listens there
    srv = start_server(data, knowledge, tmp_path / "down.log", CHROMA_HOST="127.0.0.1", CHROMA_PORT=closed)
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        for call in (lambda: c.models.list(), lambda: ask(c, "Qui est Keir Starmer ?")):
            with pytest.raises(openai.InternalServerError) as err:
                call()
            assert err.value.status_code == 503
            assert f"cannot open the Chroma server at 127.0.0.1:{closed}" in err.value.body["message"]
    finally:
        srv.stop()
    srv = start_server(data, knowledge, tmp_path / "llm.log", ASSISTANT_GENERATOR="openai",
                       OPENAI_BASE_URL=f"http://127.0.0.1:{closed}/v1", ASSISTANT_LLM_MAX_RETRIES="0",
                       ASSISTANT_LLM_TIMEOUT="5")
    try:
        c = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        with pytest.raises(openai.InternalServerError) as err:
            ask(c, "Qui est Keir Starmer ?")
        assert err.value.status_code == 503 and err.value.body["code"] == "unavailable"
        assert "Traceback" not in err.value.body["message"] and err.value.body["message"]
    finally:
        srv.stop()


# --- auth and binding --------------------------------------------------------------------------------------
def test_api_key_required_everywhere_but_health(corpus, tmp_path):
    root, data, knowledge = corpus
    srv = start_server(data, knowledge, tmp_path / "auth.log", ASSISTANT_API_KEY=KEY)
    try:
        with httpx.Client(base_url=srv.url, timeout=300) as h:
            assert h.get("/health").status_code == 200
            for path in ("/v1/models", "/v1/kbs", "/docs", "/openapi.json"):
                r = h.get(path)
                assert r.status_code == 401, path
                assert r.json()["error"]["type"] == "authentication_error"
            assert h.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert h.get("/v1/models", headers={"Authorization": KEY}).status_code == 401
            assert h.get("/docs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        bad = openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        good = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0, timeout=300)
        reply = ask(good, "Qui est Keir Starmer ?")
        assert "Premier ministre britannique" in reply.choices[0].message.content
    finally:
        srv.stop()
    assert KEY not in srv.log()  # never logged


def test_without_key_the_server_is_open(http):
    assert http.get("/v1/models").status_code == 200
    assert http.get("/openapi.json").json()["paths"].keys() >= {"/v1/chat/completions", "/v1/search", "/v1/jobs/{job_id}"}


def test_docs_page_loads_nothing_from_outside(http):
    import re

    page = http.get("/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls and all(u.startswith("/") for u in urls), urls
    for u in urls:
        assert http.get(u).status_code == 200, u


def test_non_loopback_bind_without_key_and_workers_with_embedded_chroma_are_refused(corpus):
    root, data, knowledge = corpus
    for args in (["--host", "0.0.0.0"], ["--workers", "2"]):
        proc = subprocess.run([sys.executable, "-m", "assistant.cli", "serve", "--port", str(free_port()), *args],
                              cwd=ROOT, env=_env(data, knowledge), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert ("API key" in proc.stderr) if "--host" in args else ("Chroma server" in proc.stderr)


@pytest.mark.slow
def test_workers_share_a_chroma_server_and_see_each_others_ingest(chroma_server, tmp_path):
    """`--workers 2` over a Chroma server: an upload indexed by one worker is found by both (fresh
    connections land on either), and the job can be read from either."""
    host, port, _ = chroma_server
    knowledge = tmp_path / "knowledge"
    knowledge.mkdir()
    log_path = tmp_path / "workers.log"
    env = _env(tmp_path / "data", knowledge, CHROMA_HOST=host, CHROMA_PORT=str(port), ASSISTANT_KB="workers")
    srv_port = free_port()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "assistant.cli", "serve", "--port", str(srv_port),
                                 "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{srv_port}", proc, log_path)
    try:
        _wait_http(srv.url + "/health", timeout=180, proc=proc)

        def fresh(method: str, path: str, **kw):
            with httpx.Client(base_url=srv.url, timeout=300) as h:  # a new connection each time
                return h.request(method, path, **kw)

        def upload_and_wait(name: str, data: bytes) -> None:
            r = fresh("POST", "/v1/kbs/workers/documents", files=[("files", (name, data, "text/plain"))])
            assert r.status_code == 202, r.text
            deadline = time.monotonic() + 300
            while (job := fresh("GET", f"/v1/jobs/{r.json()['job']['id']}").json())["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert job["status"] == "done", job

        def top_sources(query: str, n: int = 16) -> tuple[set, set]:
            pids, sources = set(), set()
            for _ in range(n):
                pids.add(fresh("GET", "/health").json()["pid"])
                r = fresh("POST", "/v1/search", json={"query": query, "kb": "workers", "k": 1})
                assert r.status_code == 200, r.text
                sources.add(r.json()[0]["source"])
            return pids, sources

        upload_and_wait("phare.txt", LIGHTHOUSE.encode())
        pids, sources = top_sources("phare de Kerbrat 1887")
        assert sources == {"phare.txt"}
        upload_and_wait(VANCE, (KNOWLEDGE / VANCE).read_bytes())  # both workers have the base open now
        pids2, sources = top_sources("Guo Jiakun porte-parole")
        assert sources == {VANCE}
        assert len(pids | pids2) == 2, "the requests did not reach both workers"
    finally:
        srv.stop()


# --- concurrency ------------------------------------------------------------------------------------------
QUESTIONS = [
    "Qui a représenté Xi Jinping au sommet ?",
    "Who represented Xi Jinping at the summit?",
    "Combien de pays ont signé la déclaration ?",
    "Quels pays ont refusé de signer la déclaration ?",
    "Who won the 2024 Nobel Prize in Physics?",
]
QUERIES = ["Zhang Guoqing", "déclaration signée par 61 pays", "DeepSeek", "Keir Starmer", "régimes autoritaires",
           "open source", "J.D. Vance", "Royaume-Uni", "sommet de Paris 10 et 11 février", "Guo Jiakun"]


def _answer_key(reply) -> tuple:
    g = reply.model_extra["grounding"]
    return (reply.choices[0].message.content, g["declined"],
            json.dumps(g["citations"], sort_keys=True), json.dumps(g["conflicts"], sort_keys=True))


def _search_key(passages: list[dict]) -> tuple:
    return tuple((p["source"], p["chunk_id"], p["rank"], round(p["score"], 9)) for p in passages)


@pytest.mark.slow
def test_load_concurrent_chats_and_searches_match_serial(client, server):
    serial = {q: _answer_key(ask(client, q)) for q in QUESTIONS}
    with httpx.Client(base_url=server.url, timeout=300) as h:
        serial_search = {q: _search_key(h.post("/v1/search", json={"query": q}).json()) for q in QUERIES}

    chats = [QUESTIONS[i % len(QUESTIONS)] for i in range(50)]
    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(lambda q: _answer_key(ask(client, q)), chats))
    assert replies == [serial[q] for q in chats]

    searches = [QUERIES[i % len(QUERIES)] for i in range(200)]
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    with httpx.Client(base_url=server.url, timeout=300, limits=limits) as h:
        def search(q):
            r = h.post("/v1/search", json={"query": q})
            assert r.status_code == 200, r.text
            return _search_key(r.json())

        with ThreadPoolExecutor(200) as pool:
            results = list(pool.map(search, searches))
    assert results == [serial_search[q] for q in searches]


@pytest.mark.slow
def test_ingest_during_searches_loses_nothing(http, server):
    # a knowledge base of its own, filled through the API
    files = [("files", (name, (KNOWLEDGE / name).read_bytes(), "text/plain")) for name in (SUMMIT, VANCE)]
    job = http.post("/v1/kbs/live/documents", files=files).json()["job"]
    assert wait_job(http, job["id"])["status"] == "done"
    before = {q: _search_key(http.post("/v1/search", json={"query": q, "kb": "live"}).json()) for q in QUERIES}

    stop, errors, seen = threading.Event(), [], []

    def hammer():
        with httpx.Client(base_url=server.url, timeout=300) as h:
            i = 0
            while not stop.is_set():
                q = QUERIES[i % len(QUERIES)]
                i += 1
                r = h.post("/v1/search", json={"query": q, "kb": "live"})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    seen.append((q, _search_key(r.json())))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        r = http.post("/v1/kbs/live/documents", files=[("files", ("phare.txt", LIGHTHOUSE.encode(), "text/plain"))])
        assert r.status_code == 202, r.text
        done = wait_job(http, r.json()["job"]["id"])
        time.sleep(1.0)  # searches after the swap too
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert done["status"] == "done" and done["report"]["added"] == ["phare.txt"]
    assert errors == []
    after = {q: _search_key(http.post("/v1/search", json={"query": q, "kb": "live"}).json()) for q in QUERIES}
    assert len(seen) > len(QUERIES)
    for q, key in seen:  # every search saw the knowledge base before or after the ingest, never half of it
        assert key in (before[q], after[q]), q
    docs = {d["source"]: d for d in http.get("/v1/kbs/live/documents").json()}
    assert set(docs) == {SUMMIT, VANCE, "phare.txt"} and all(d["complete"] for d in docs.values())
    found = http.post("/v1/search", json={"query": "phare de Kerbrat 1887", "kb": "live", "k": 1}).json()
    assert found[0]["source"] == "phare.txt"


def test_retriever_reloads_bm25_safely_while_it_is_rewritten(indexed_settings):
    """Searches from many threads while another thread rewrites the BM25 index over and over: no
    search fails, none rebuilds the index itself, every result is the one of the unchanged corpus."""
    from assistant import indexing
    from assistant.retrieval import open_retriever

    retriever = open_retriever(indexed_settings, k=5)
    expected = {q: [p.chunk_id for p in retriever.search(q)] for q in QUERIES}
    stop, errors, rebuilt_by_readers = threading.Event(), [], []
    real_rebuild = indexing.rebuild_lexical

    def writer():
        store = indexing.open_store(indexed_settings, create=False)
        while not stop.is_set():
            real_rebuild(indexed_settings, indexed_settings.kb, store, force=True)

    def reader():
        deadline = time.monotonic() + 6
        i = 0
        while time.monotonic() < deadline:
            q = QUERIES[i % len(QUERIES)]
            i += 1
            try:
                if i % 20 == 0:  # a whole search now and then; the BM25 look-up (what is rewritten) always
                    got = [p.chunk_id for p in retriever.search(q)]
                    if got != expected[q]:
                        errors.append((q, got))
                elif not retriever._lexical_index().search(q, 5):
                    errors.append((q, "no BM25 hit"))
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    import assistant.retrieval as retrieval

    def spy(*a, **kw):
        rebuilt_by_readers.append(threading.current_thread().name)
        return real_rebuild(*a, **kw)

    retrieval.rebuild_lexical = spy
    try:
        w = threading.Thread(target=writer)
        w.start()
        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(120)
        stop.set()
        w.join(60)
    finally:
        retrieval.rebuild_lexical = real_rebuild
    assert errors == []
    assert rebuilt_by_readers == []


# --- pure helpers ------------------------------------------------------------------------------------------
def test_conversation_from_messages():
    msgs = [oa.ChatMessage(role="system", content="Be a pirate."),
            oa.ChatMessage(role="user", content="Combien de pays ?"),
            oa.ChatMessage(role="assistant", content="61 [1]" + oa.SOURCES_RULE + "- [1] T (a.txt)"),
            oa.ChatMessage(role="user", content=[{"type": "text", "text": "Et les États-Unis ?"}])]
    question, history = oa.conversation(msgs)
    assert question == "Et les États-Unis ?"
    assert [(t.question, t.answer) for t in history] == [("Combien de pays ?", "61 [1]")]
    with pytest.raises(ValueError):
        oa.conversation([oa.ChatMessage(role="user", content="q"), oa.ChatMessage(role="assistant", content="a")])


def test_document_markup_is_inert_and_chunks_rejoin():
    text = 'Voir ![x](http://evil/p.png) et <img src=x> puis [lien](http://e) ; [1]: http://e ; marqueur [2].'
    safe = oa.inert(text)
    assert safe == ('Voir !\\[x]\\(http://evil/p.png) et \\<img src=x> puis [lien]\\(http://e) ; '
                    '[1]\\: http://e ; marqueur [2].')
    assert "".join(oa.pieces("Un  texte\navec des\n\nlignes [1].  ")) == "Un  texte\navec des\n\nlignes [1].  "


def test_job_records_survive_the_process_and_a_dead_server_is_reported(tmp_path):
    from assistant.api.service import JOB_RETENTION_S, Jobs

    jobs = Jobs(tmp_path / "jobs")
    job = jobs.create("default", files=["a.txt"])
    jobs.update(job, status="running")
    assert Jobs(tmp_path / "jobs").get(job["id"])["status"] == "running"  # another worker reads it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobs.update(job, pid=dead.pid)
    seen = jobs.get(job["id"])
    assert seen["status"] == "failed" and "stopped" in seen["error"]
    assert jobs.get("../../etc/passwd") is None and jobs.get("0" * 32) is None
    old = tmp_path / "jobs" / f"{job['id']}.json"
    os.utime(old, (time.time() - JOB_RETENTION_S - 10,) * 2)
    jobs.create("default")
    assert not old.exists()
