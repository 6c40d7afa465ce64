"""End to end in a real browser: `streamlit run ui/app.py` driven by Playwright with Debian's chromium.

Chat with the cited answer about the declaration (both figures, 61 and 58), a .txt uploaded and indexed
on the Library page then asked about and cited, the Evals page with a report; a screenshot of each page
goes to the test's output folder and to test-artifacts/ (git-ignored).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KNOWLEDGE, ROOT, _wait_http, free_port
from test_ui_apptest import sample_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
FACT = ("Le festival Zorglub de Tromsø a accueilli exactement 4321 visiteurs en 2031.\n\n"
        "Les organisateurs du festival Zorglub ont annoncé que la prochaine édition aura lieu en mars.\n")

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) to run the browser test"
    if os.environ.get("ASSISTANT_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A streamlit server on a free port over a private, already indexed copy of knowledge/."""
    _need_chromium()
    from assistant.config import Settings
    from assistant.indexing import ingest

    base = tmp_path_factory.mktemp("browser")
    docs, data, reports = base / "knowledge", base / "data", base / "reports" / "sample"
    shutil.copytree(KNOWLEDGE, docs)
    ingest(Settings(data_dir=data, knowledge_dir=docs))
    reports.mkdir(parents=True)
    (reports / "report.json").write_text(json.dumps(sample_report()), encoding="utf-8")

    with _streamlit(base, ASSISTANT_DATA_DIR=str(data), ASSISTANT_KNOWLEDGE_DIR=str(docs),
                    ASSISTANT_EVAL_REPORTS=str(reports.parent)) as url:
        yield url, docs
    assert "Traceback" not in (base / "streamlit.log").read_text(), "the server logged a traceback"


@contextlib.contextmanager
def _streamlit(base: Path, **settings: str):
    """The real app (`streamlit run ui/app.py`) on a free loopback port with only these ASSISTANT_*
    settings from the environment; its log in base/streamlit.log; stopped by its pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHROMA_", "ASSISTANT_"))}
    env.update(settings, LANGSMITH_TRACING_V2="false", LANGSMITH_TRACING="false", ANONYMIZED_TELEMETRY="False")
    log = open(base / "streamlit.log", "w")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def _shot(page, tmp_path: Path, name: str) -> None:
    page.wait_for_timeout(500)  # let the last deltas paint
    out = tmp_path / "screenshots"
    out.mkdir(exist_ok=True)
    # the main area scrolls inside the page: grow the window to its height for a whole-page picture
    height = page.evaluate("Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
                           "[data-testid=stSidebarContent]')].map(e => e.scrollHeight), 1000)")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / name), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(out / name, ARTIFACTS / name)


def _ask(page, question: str, number: int):
    """Type the conversation's `number`-th question and wait until its answer is drawn."""
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    # the sidebar's expander for an answer is drawn once the answer and its source cards are
    page.get_by_test_id("stSidebar").get_by_text(f"#{number} · ").wait_for()
    return page.get_by_test_id("stChatMessage").last


def _nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for()


def test_chat_upload_and_evals_in_a_real_browser(app_url, page, tmp_path):
    url, docs = app_url
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()

    answer = _ask(page, "Combien de pays ont signé la déclaration ?", 1)
    text = answer.inner_text()
    assert "61" in text and "58" in text
    assert "sommet-ia-paris-declaration.txt" in text and "chine-rejette-critiques-vance.txt" in text
    assert answer.locator("mark.cite").count() >= 2  # the cited spans, highlighted in their passages
    assert "Traceback" not in page.content()
    _shot(page, tmp_path, "chat.png")

    _nav(page, "Library")
    upload = tmp_path / "festival-zorglub.txt"
    upload.write_text(FACT, encoding="utf-8")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(upload))
    page.get_by_text("festival-zorglub.txt").first.wait_for()
    page.get_by_role("button", name="Add and index").click()
    page.get_by_text("Added and indexed festival-zorglub.txt").wait_for(timeout=90_000)
    uploads = docs.parent / "data" / "kbs" / "default" / "uploads"  # knowledge/ stays read-only
    assert (uploads / "festival-zorglub.txt").read_text(encoding="utf-8") == FACT
    assert not (docs / "festival-zorglub.txt").exists()
    page.get_by_test_id("stDataFrame").first.wait_for()
    _shot(page, tmp_path, "library.png")

    _nav(page, "Chat")
    answer = _ask(page, "Combien de visiteurs le festival Zorglub a-t-il accueillis ?", 2)
    text = answer.inner_text()
    assert "4321" in text and "festival-zorglub.txt" in text
    _shot(page, tmp_path, "chat-upload.png")

    _nav(page, "Evals")
    page.get_by_text("Questions", exact=True).wait_for()
    assert page.get_by_test_id("stMetric").count() >= 5
    _shot(page, tmp_path, "evals.png")



# --- document text is data: a hostile document in a real browser ---------------------------------------------
class _Counter:
    """A loopback HTTP server that counts every request (it serves a 1×1 PNG): zero must arrive."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                seen.append(self.path)
                body = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                                     "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def hostile_documents(folder: Path, port: int) -> None:
    """Two documents that disagree on a figure, full of Markdown, HTML, shortcodes, rich markup and [n]."""
    folder.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    (folder / "kerbrat.txt").write_text(
        f"La pétition [/] du phare de Kerbrat **bold** :warning: ![t]({base}/title.png)\n\n"
        f"Selon le rapport [1] du port, 73 pêcheurs ont signé la pétition du phare de Kerbrat "
        f"![pixel]({base}/pixel.png?leak=conversation) **bold** :warning: [x]({base}/link) <b>html</b> [/] "
        f":material/home: a -> b.\n\n"
        "Le phare de Kerbrat se dresse sur la pointe depuis 1881 et guide les bateaux du port.\n",
        encoding="utf-8")
    (folder / "journal.txt").write_text(
        "Le journal de Kerbrat\n\n"
        f"Le journal de la côte écrit que 75 pêcheurs ont signé la pétition du phare de Kerbrat "
        f'<img src="{base}/img.png"> [2] :rocket:.\n',
        encoding="utf-8")


HOSTILE_QUESTION = "Combien de pêcheurs ont signé la pétition du phare de Kerbrat ?"
QUESTION_LIMIT = 300


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory):
    """A fresh streamlit server whose default knowledge base holds the hostile documents, beside a knowledge
    base `aaa` whose name sorts first; questions are limited to QUESTION_LIMIT characters."""
    _need_chromium()
    from assistant.config import Settings
    from assistant.indexing import ingest

    counter = _Counter()
    base = tmp_path_factory.mktemp("hostile")
    docs, other, data = base / "knowledge", base / "other", base / "data"
    hostile_documents(docs, counter.port)
    other.mkdir()
    (other / "chats.txt").write_text("Les chats dorment seize heures par jour.\n", encoding="utf-8")
    ingest(Settings(data_dir=data, knowledge_dir=docs))
    ingest(Settings(data_dir=data, knowledge_dir=docs), source_dir=other, kb="aaa")

    try:
        with _streamlit(base, ASSISTANT_DATA_DIR=str(data), ASSISTANT_KNOWLEDGE_DIR=str(docs),
                        ASSISTANT_GENERATOR="extractive", ASSISTANT_MAX_QUESTION_CHARS=str(QUESTION_LIMIT),
                        ASSISTANT_EVAL_REPORTS=str(base / "reports")) as url:
            yield url, counter
    finally:
        counter.close()


# JS: every <a> and <img> of the main area, and what the markers of the answer link to
_LINKS = """() => [...document.querySelectorAll('[data-testid=stMain] a')].map(a => ({
    href: a.getAttribute('href') || '', cls: a.className, text: a.textContent}))"""
_IMAGES = "() => [...document.images].map(i => i.src)"


def test_first_session_opens_the_configured_knowledge_base(hostile_app, page):
    url, _ = hostile_app
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    page.get_by_text("Answers come only from").wait_for()
    assert "knowledge base default" in page.get_by_text("Answers come only from").inner_text()
    answer = _ask(page, HOSTILE_QUESTION, 1)
    assert "73" in answer.inner_text() and "Not in the sources" not in answer.inner_text()
    # the selector still switches: pick "aaa", and the next question is answered from it
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name="aaa").click()
    page.get_by_text("Answers come only from the documents of the knowledge base aaa").wait_for()
    answer = _ask(page, "Combien d'heures dorment les chats ?", 2)
    assert "chats.txt" in answer.inner_text()


def test_hostile_document_is_shown_as_text(hostile_app, page, tmp_path):
    url, counter = hostile_app
    page.goto(url)
    page.get_by_test_id("stChatInputTextArea").wait_for()
    answer = _ask(page, HOSTILE_QUESTION, 1)
    answer.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-hostile-answer.png"))  # the answer's first screen, for a person
    for expander in answer.get_by_text("Read in context").all():  # the whole passage and its context too
        expander.click()
    page.get_by_test_id("stSidebar").get_by_text("Passage texts").click()
    page.wait_for_timeout(1500)
    _shot(page, tmp_path, "chat-hostile.png")

    text = answer.inner_text()
    for literal in ("**bold**", ":warning:", "<b>html</b>", "[/]", ":material/home:", "a -> b", ":rocket:",
                    f"![pixel](http://127.0.0.1:{counter.port}/pixel.png?leak=conversation)",
                    f"[x](http://127.0.0.1:{counter.port}/link)", "rapport [1] du port",
                    f'<img src="http://127.0.0.1:{counter.port}/img.png">'):
        assert literal in text, literal
    assert "⚠" not in text and "🚀" not in text
    assert not answer.locator("b", has_text="html").count() and not answer.locator("img").count()
    assert not [src for src in page.evaluate(_IMAGES) if str(counter.port) in src]
    links = page.evaluate(_LINKS)
    assert not [a for a in links if str(counter.port) in a["href"]]
    own = [a for a in answer.locator("a").evaluate_all("els => els.map(a => [a.className, a.getAttribute('href')])")]
    assert own and all(cls == "cite-ref" and href.startswith("#cite-") for cls, href in own), own
    # the document's own "[1]" is text; the markers the assistant added are links to the source cards
    assert not answer.locator("a.cite-ref").evaluate_all(
        "els => els.filter(a => (a.parentElement.previousSibling || {}).textContent?.endsWith('rapport '))")
    first = answer.locator("a.cite-ref").first
    target = first.get_attribute("href")[1:]
    assert answer.locator(f"[id='{target}']").count() == 1
    first.click()
    page.wait_for_timeout(500)
    assert answer.locator(f"[id='{target}']").is_visible()
    page.wait_for_timeout(1000)
    assert counter.requests == [], counter.requests  # the browser fetched nothing from the document's URLs


def test_too_long_question_keeps_the_text_and_shows_the_limit(hostile_app, page):
    url, _ = hostile_app
    page.goto(url)
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for()
    long_question = "Combien de pêcheurs ont signé la pétition ? " * 12  # > QUESTION_LIMIT characters
    assert len(long_question.strip()) > QUESTION_LIMIT
    box.fill(long_question)
    box.press("Enter")
    page.get_by_text(f"the limit is {QUESTION_LIMIT}").wait_for()
    page.wait_for_timeout(500)
    assert box.input_value() == long_question  # still there, to be shortened and sent again
    assert not page.get_by_test_id("stSidebar").get_by_text("#1 · ").count()  # nothing was asked


def test_chroma_down_says_what_is_down_and_how_to_start_it(tmp_path, page):
    """CHROMA_HOST on a closed loopback port: the sidebar and the chat name the Chroma server and `chroma run`."""
    chroma_port = free_port()
    with _streamlit(tmp_path, ASSISTANT_DATA_DIR=str(tmp_path / "data"), CHROMA_HOST="127.0.0.1",
                    CHROMA_PORT=str(chroma_port)) as url:
        page.goto(url)
        box = page.get_by_test_id("stChatInputTextArea")
        box.wait_for()
        box.fill("Combien de pays ont signé la déclaration ?")
        box.press("Enter")
        reply = page.get_by_test_id("stChatMessage").last.get_by_test_id("stAlertContentError")
        reply.wait_for()
        text = reply.inner_text()
        assert f"Chroma server at 127.0.0.1:{chroma_port}" in text and "chroma run" in text, text
        assert "Internal error" not in text and "ConnectError" not in text
        assert "chroma run" in page.get_by_test_id("stSidebar").inner_text()
