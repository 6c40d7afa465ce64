"""End to end in a real browser: `streamlit run ui/app.py` driven by Playwright with Debian's chromium.

Chat with the cited answer about the declaration (both figures, 61 and 58), a .txt uploaded and indexed
on the Library page then asked about and cited, the Evals page with a report; a screenshot of each page
goes to the test's output folder and to test-artifacts/ (git-ignored).
"""
from __future__ import annotations

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

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHROMA_", "ASSISTANT_"))}
    env.update(ASSISTANT_DATA_DIR=str(data), ASSISTANT_KNOWLEDGE_DIR=str(docs), ASSISTANT_EVAL_REPORTS=str(reports.parent),
               LANGSMITH_TRACING_V2="false", LANGSMITH_TRACING="false", ANONYMIZED_TELEMETRY="False")
    log = open(base / "streamlit.log", "w")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"), "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}", docs
    finally:
        _stop(proc)
        log.close()
        assert "Traceback" not in (base / "streamlit.log").read_text(), "the server logged a traceback"


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

