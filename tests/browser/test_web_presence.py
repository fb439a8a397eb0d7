"""The web client under a join storm: one line for a burst of joins, and a large
room shown by its member count."""

import re

from playwright.sync_api import expect


def test_a_burst_of_joins_is_one_line_and_fills_the_member_list(start_daemon, open_page):
    chatd = start_daemon("--coalesce-window", "3")  # every join below lands in one window
    alice = open_page(chatd).login("alice").join("#storm")
    users = [chatd.line().login(f"u{i}", "#storm") for i in range(6)]
    try:
        expect(alice.log("#storm").locator(".line.presence")).to_have_text(
            [re.compile("u0, u1, u2 and 3 others joined")], timeout=10000)
        expect(alice.members.locator(".member")).to_have_count(7)
        expect(alice.page.locator("#member-count")).to_have_text("7")
    finally:
        for u in users:
            u.close()


def test_a_large_room_shows_its_count_and_says_joins_are_not_shown(start_daemon, open_page):
    chatd = start_daemon("--large-room", "4")
    users = [chatd.line().login(f"u{i}", "#big") for i in range(3)]
    try:
        alice = open_page(chatd).login("alice").join("#big")
        expect(alice.log("#big").locator(".line.system").last).to_have_text(
            re.compile("#big is a large room: 4 members; joins and parts are not shown"))
        expect(alice.page.locator("#member-count")).to_have_text("4")
        expect(alice.page.locator("#conversation-sub")).to_have_text(re.compile("^4 present"))
        alice.say("/who")
        expect(alice.page.locator(".line").filter(has_text="In #big:")).to_have_text(
            re.compile("In #big: u0, u1, u2, alice"))
    finally:
        for u in users:
            u.close()
