"""Real-browser fixtures: Debian's Chromium driven by Playwright against a real chatd.

The daemon fixtures come from the integration suite.  Chromium and the
``playwright`` package are test dependencies (see README): a missing one is an
error here, never a skip.
"""

from pathlib import Path

import pytest

# Re-exported so pytest registers them for this directory too: the daemons,
# and the hook that attaches a failing test's daemon log to its report.
from integration.conftest import (  # noqa: F401
    daemon,
    pytest_runtest_makereport,
    start_daemon,
)
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no sandbox (containers), no GPU, and none of the
# background traffic a first run would start.  Playwright gives every launch a
# fresh temporary user-data-dir.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
DESKTOP = {"width": 1200, "height": 720}
PHONE = {"width": 390, "height": 760}

expect.set_options(timeout=5000)


class ChatPage:
    """One person's browser tab on the web client, driven the way they would."""

    def __init__(self, context, chatd, viewport=DESKTOP):
        self.context = context
        self.page = context.new_page()
        self.page.set_viewport_size(viewport)
        self.problems = []
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        self.page.goto(f"http://127.0.0.1:{chatd.ws_port}/")
        self.status = self.page.locator("#status")
        self.login_error = self.page.locator("#login-error")
        self.banner = self.page.locator("#banner")
        self.title = self.page.locator("#conversation-title")
        self.members = self.page.locator("#member-list")

    @property
    def phone(self) -> bool:
        return self.page.viewport_size["width"] < 720

    def submit_login(self, nick: str, password: str = "") -> None:
        expect(self.status).to_have_text("online")
        self.page.fill("#nick-input", nick)
        self.page.fill("#password-input", password)
        self.page.click("#login-button")

    def login(self, nick: str) -> "ChatPage":
        self.submit_login(nick)
        expect(self.page.locator("#me")).to_have_text(nick)
        return self

    def join(self, room: str) -> "ChatPage":
        if self.phone:
            self.page.click("#menu-toggle")
        self.page.fill("#join-input", room)
        self.page.press("#join-input", "Enter")
        expect(self.title).to_have_text(room)
        expect(self.members.get_by_text(self.page.locator("#me").inner_text())).to_be_visible()
        return self

    def open(self, conversation: str) -> None:
        """Switch to a tab: ``#room`` or ``@nick``."""
        if self.phone:
            self.page.click("#menu-toggle")
        self.page.click(f'.tab[data-conversation="{conversation}"] .tab-open')
        expect(self.title).to_have_text(conversation)

    def say(self, text: str) -> None:
        self.page.fill("#message-input", text)
        self.page.press("#message-input", "Enter")

    def log(self, conversation: str):
        return self.page.locator(f'.log[data-conversation="{conversation}"]')

    def messages(self, conversation: str):
        return self.log(conversation).locator(".line.msg, .line.action")

    def expect_message(self, conversation: str, nick: str, text: str, **kw) -> None:
        line = self.messages(conversation).filter(has_text=text)
        expect(line).to_have_count(1, **kw)
        expect(line.locator(".nick")).to_have_text(nick)
        expect(line.locator(".text")).to_have_text(text)

    def texts(self, conversation: str) -> list:
        return self.messages(conversation).locator(".text").all_inner_texts()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), animations="disabled")
        return path


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser):
    """``open_page(chatd, viewport=...)``: a new person with a browser profile of their own."""
    contexts, pages = [], []

    def opener(chatd, viewport=DESKTOP) -> ChatPage:
        context = browser.new_context()
        contexts.append(context)
        page = ChatPage(context, chatd, viewport)
        pages.append(page)
        return page

    yield opener
    for context in contexts:
        context.close()
    problems = [p for page in pages for p in page.problems
                # A WebSocket refused while the daemon is down is expected noise.
                if "WebSocket" not in p and "ERR_INTERNET_DISCONNECTED" not in p]
    assert not problems, problems
