"""The web client logs in again with its resume token, not a kept password, and
asks the person for the password when the token is refused."""

import re
import sqlite3

from playwright.sync_api import expect

from chatd.store.sqlite import FILENAME

PASSWORD = "web-resume-password"
FAST_HASH = ("--argon2-memory-cost", "8192", "--argon2-time-cost", "1")


def test_the_page_resumes_after_a_restart_and_asks_again_when_refused(start_daemon,
                                                                      open_page):
    chatd = start_daemon(*FAST_HASH)
    owner = chatd.line().login("alice")
    owner.send(f"/register {PASSWORD}")
    owner.expect("is now registered")
    owner.close()

    alice = open_page(chatd)
    alice.submit_login("alice", PASSWORD)
    expect(alice.page.locator("#me")).to_have_text("alice")
    alice.join("#ops")

    chatd.restart()
    expect(alice.status).to_have_text("online", timeout=15000)
    expect(alice.page.locator("#me")).to_have_text("alice")
    chatd.wait_for(lambda: "alice resumed from" in chatd.log(), "the page's resume")
    assert "alice logged in from" not in chatd.log()  # no password was sent again

    # Every token gone (as after /password elsewhere): the page asks for the password.
    chatd.stop()
    with sqlite3.connect(chatd.workdir / "chatd-data" / FILENAME) as db:
        db.execute("DELETE FROM resume_tokens")
    db.close()
    chatd.start()
    expect(alice.page.locator("#login-view")).to_be_visible(timeout=15000)
    expect(alice.login_error).to_have_text(re.compile("log in again as alice"))
    expect(alice.page.locator("#nick-input")).to_have_value("alice")
    alice.submit_login("alice", PASSWORD)
    expect(alice.page.locator("#me")).to_have_text("alice")
