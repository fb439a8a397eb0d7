"""The web client in a real browser, against a real daemon, next to a telnet-style user."""

import re

from playwright.sync_api import expect

from .conftest import PHONE


def test_two_browsers_and_a_tcp_user_chat_in_a_room(daemon, open_page):
    alice = open_page(daemon).login("alice").join("#lobby")
    bob = open_page(daemon, viewport=PHONE).login("bob").join("#lobby")
    carol = daemon.line().login("carol", "#lobby")
    try:
        # Presence: everyone sees who is here, joins included.
        for page in (alice, bob):
            expect(page.members.locator(".member")).to_have_text(
                [re.compile("^alice"), re.compile("^bob"), re.compile("^carol")])
        expect(alice.log("#lobby").locator(".line.presence")).to_have_text(
            [re.compile("bob joined"), re.compile("carol joined")])

        alice.say("hello bob, the kettle is on")
        bob.expect_message("#lobby", "alice", "hello bob, the kettle is on")
        carol.expect("[#lobby] <alice> hello bob, the kettle is on")

        bob.say("/me runs to the kitchen")
        alice.expect_message("#lobby", "* bob", "runs to the kitchen")
        carol.expect("[#lobby] * bob runs to the kitchen")

        carol.send("two sugars for me, please")
        alice.expect_message("#lobby", "carol", "two sugars for me, please")
        bob.expect_message("#lobby", "carol", "two sugars for me, please")
        bob.screenshot("web-client-phone.png")
        bob.say("/msg alice do we have biscuits?")
        expect(alice.page.locator('.tab[data-conversation="@bob"] .badge')).to_have_text("1")
        alice.screenshot("web-client.png")
        bob.open("#lobby")

        # Server text is shown as text, never parsed as markup.
        carol.send('tea <img src=x onerror="document.title=\'owned\'"> <b>now</b>')
        text = 'tea <img src=x onerror="document.title=\'owned\'"> <b>now</b>'
        alice.expect_message("#lobby", "carol", text)
        bob.expect_message("#lobby", "carol", text)
        assert alice.log("#lobby").locator("img, b").count() == 0
        assert alice.page.title() == "chatd"


        # A part and a quit take people off the member list and say so.
        carol.send("/part #lobby off to the shops")
        for page in (alice, bob):
            expect(page.log("#lobby").locator(".line.presence").last).to_have_text(
                re.compile("carol left \\(off to the shops\\)"))
            expect(page.members.locator(".member")).to_have_count(2)
        bob.page.close()
        expect(alice.log("#lobby").locator(".line.presence").last).to_have_text(
            re.compile("bob quit"))
        expect(alice.members.locator(".member")).to_have_text([re.compile("^alice")])
    finally:
        carol.close()


def test_private_messages_get_their_own_tab(daemon, open_page):
    dana = open_page(daemon).login("dana").join("#pm-test")
    erin = open_page(daemon).login("erin").join("#pm-test")
    frank = daemon.line().login("frank")
    try:
        # Clicking a member opens a private conversation with them.
        dana.members.get_by_role("button", name="erin").click()
        expect(dana.title).to_have_text("@erin")
        dana.say("just between us")
        dana.expect_message("@erin", "dana", "just between us")

        # Erin is still in the room; the new tab says it has something unread.
        expect(erin.title).to_have_text("#pm-test")
        tab = erin.page.locator('.tab[data-conversation="@dana"]')
        expect(tab.locator(".badge")).to_have_text("1")
        erin.open("@dana")
        erin.expect_message("@dana", "dana", "just between us")
        erin.say("understood")
        dana.expect_message("@erin", "erin", "understood")
        # Nothing private leaked into the room.
        assert dana.texts("#pm-test") == [] and erin.texts("#pm-test") == []

        # The line protocol and the browser reach each other too.
        frank.send("/msg dana hello from a terminal")
        dana.open("@frank")
        dana.expect_message("@frank", "frank", "hello from a terminal")
        dana.page.fill("#message-input", "/msg frank and hello back")
        dana.page.press("#message-input", "Enter")
        frank.expect("[pm dana -> frank] and hello back")
    finally:
        frank.close()


def test_errors_from_the_server_are_shown_in_plain_words(daemon, open_page):
    open_page(daemon).login("gina")
    twin = open_page(daemon)
    twin.submit_login("gina")
    expect(twin.login_error).to_have_text("gina is already taken")
    expect(twin.page.locator("#chat-view")).to_be_hidden()

    twin.submit_login("9lives")
    expect(twin.login_error).to_contain_text("a nick is 1-24 letters")

    # Logging in with a password: the server's answer is shown, whatever it is
    # (no such account, or a server without accounts); nobody gets in.
    twin.submit_login("harry", "not-the-password")
    expect(twin.login_error).not_to_have_text(re.compile("a nick is"))
    expect(twin.login_error).to_be_visible()
    expect(twin.page.locator("#chat-view")).to_be_hidden()

    twin.login("gina2")
    twin.page.fill("#join-input", "#no spaces")
    twin.page.press("#join-input", "Enter")
    expect(twin.banner).to_contain_text("Could not join #no spaces: a room is '#'")
    twin.page.fill("#message-input", "/frobnicate")
    twin.page.press("#message-input", "Enter")
    expect(twin.banner).to_contain_text("Unknown command /frobnicate")


def test_reconnect_backoff_doubles_to_thirty_seconds_with_jitter(daemon, open_page):
    page = open_page(daemon).page
    delays = page.evaluate("""() => {
        const d = window.chatdClient.backoffDelay;
        const row = (r) => Array.from({length: 8}, (_, i) => d(i, r));
        return {low: row(0), mid: row(0.5), high: row(0.999999)};
    }""")
    assert delays["mid"] == [1, 2, 4, 8, 16, 30, 30, 30]
    # The cap applies to the schedule, jitter spreads it, nothing exceeds 30 s.
    assert delays["low"] == [0.75, 1.5, 3, 6, 12, 22.5, 22.5, 22.5]
    assert [round(x, 3) for x in delays["high"]] == [1.25, 2.5, 5, 10, 20, 30, 30, 30]


def test_page_goes_offline_and_comes_back_when_the_daemon_restarts(start_daemon, open_page):
    chatd = start_daemon()
    alice = open_page(chatd).login("alice").join("#ops")
    carol = chatd.line().login("carol", "#ops")
    carol.send("before the restart")
    alice.expect_message("#ops", "carol", "before the restart")
    carol.close()

    chatd.restart()
    # The page noticed, and is back by itself: same nick, same room, same members.
    carol = chatd.line().login("carol")
    try:
        expect(alice.status).to_have_text("online", timeout=15000)
        carol.send("/join #ops")
        carol.expect("now talking in #ops")
        expect(alice.members.locator(".member")).to_have_text(
            [re.compile("^alice"), re.compile("^carol")])
        carol.send("after the restart")
        alice.expect_message("#ops", "carol", "after the restart")
        assert alice.texts("#ops") == ["before the restart", "after the restart"]
        expect(alice.log("#ops").locator(".line.system")).to_contain_text(
            [re.compile("You joined #ops"), re.compile("Reconnected to #ops")])
        alice.say("glad to be back")
        carol.expect("[#ops] <alice> glad to be back")
    finally:
        carol.close()


def test_page_fetches_what_was_said_while_it_was_offline(start_daemon, open_page):
    """Needs the persistence "since" API: {"type": "join", "room": .., "since": MID}."""
    chatd = start_daemon()
    alice = open_page(chatd).login("alice").join("#ops")
    carol = chatd.line().login("carol", "#ops")
    carol.send("before the restart")
    alice.expect_message("#ops", "carol", "before the restart")
    carol.close()

    chatd.stop()
    expect(alice.status).to_contain_text("offline")
    expect(alice.page.locator("#message-input")).to_be_disabled()
    # Hold the page off the network so what carol says next happens while it is away.
    alice.context.set_offline(True)
    chatd.start()
    carol = chatd.line().login("carol", "#ops")
    try:
        carol.send("while you were away")
        carol.expect("[#ops] <carol> while you were away")
        expect(alice.status).to_contain_text("offline")

        alice.context.set_offline(False)
        expect(alice.status).to_have_text("online", timeout=15000)
        carol.expect("* alice joined #ops")
        expect(alice.members.locator(".member")).to_have_text(
            [re.compile("^alice"), re.compile("^carol")])
        carol.send("after the reconnect")
        alice.expect_message("#ops", "carol", "after the reconnect")
        # Fetched with "since": everything once, in order, nothing twice.
        assert alice.texts("#ops") == ["before the restart", "while you were away",
                                       "after the reconnect"]
        expect(alice.page.locator("#message-input")).to_be_enabled()
    finally:
        carol.close()


def test_a_message_delivered_twice_is_shown_once(daemon, open_page):
    # Replayed history can overlap what the page already has; the page
    # recognises a message id it has shown and skips it.  Here every frame
    # from the server reaches the page twice.
    ivy = open_page(daemon)

    def doubled(ws):
        server = ws.connect_to_server()
        server.on_message(lambda frame: (ws.send(frame), ws.send(frame)))

    ivy.page.route_web_socket(re.compile(r"/ws$"), doubled)
    ivy.page.reload()
    ivy.login("ivy").join("#echo")
    jack = daemon.line().login("jack", "#echo")
    try:
        jack.send("once")
        jack.send("twice")
        # Two connections: wait for jack's lines to reach the page, else ivy's may
        # be stored between them on a loaded machine.
        ivy.expect_message("#echo", "jack", "twice")
        ivy.say("thrice")
        ivy.expect_message("#echo", "ivy", "thrice")
        assert ivy.texts("#echo") == ["once", "twice", "thrice"]
        expect(ivy.members.locator(".member")).to_have_count(2)
    finally:
        jack.close()


def test_a_registered_nick_needs_its_password(daemon, open_page):
    kim = open_page(daemon).login("kim")
    kim.page.fill("#message-input", "/register correct-horse")
    kim.page.press("#message-input", "Enter")
    expect(kim.banner).to_contain_text("Your nick kim is registered")
    kim.context.close()

    later = open_page(daemon)
    later.submit_login("kim")
    expect(later.login_error).to_have_text(
        "kim is a registered nick: give its password to log in, or pick another nick.")
    later.submit_login("kim", "battery-staple")
    expect(later.login_error).to_have_text("wrong nick or password")
    expect(later.page.locator("#chat-view")).to_be_hidden()
    later.submit_login("kim", "correct-horse")
    expect(later.page.locator("#me")).to_have_text("kim")
    # The password is not left in the form once it has been used.
    assert later.page.input_value("#password-input") == ""


def type_line(page, text: str) -> None:
    page.page.fill("#message-input", text)
    page.page.press("#message-input", "Enter")


def test_a_bare_topic_shows_the_topic_and_leaves_it(daemon, open_page):
    # Whoever creates a room is its operator, so a bare /topic that set the
    # topic to nothing would clear it.
    lena = open_page(daemon).login("lena").join("#topics")
    mo = daemon.line().login("mo", "#topics")
    try:
        type_line(lena, "/topic be nice")
        mo.expect("* lena set the topic of #topics: be nice")
        type_line(lena, "/topic")
        expect(lena.log("#topics").locator(".line.system").last).to_have_text(
            re.compile("Topic of #topics: be nice \\(set by lena\\)"))
        expect(lena.page.locator("#conversation-sub")).to_contain_text("be nice")
        mo.send("/topic")
        mo.expect("* topic of #topics: be nice")
        expect(lena.log("#topics")).not_to_contain_text("cleared")

        # /help lists what this client does, moderation included.
        type_line(lena, "/help")
        help_lines = lena.log("#topics").locator(".line.help")
        expect(help_lines.filter(has_text="/kick [#room] NICK [reason]")).to_have_count(1)
        expect(help_lines.filter(has_text="/json")).to_have_count(0)
    finally:
        mo.close()


def test_an_operator_kicks_a_tcp_user_from_the_browser(daemon, open_page):
    nora = open_page(daemon).login("nora").join("#mods")
    oscar = daemon.line().login("oscar", "#mods")
    try:
        expect(nora.members.locator(".member")).to_have_count(2)
        type_line(nora, "/kick oscar enough of that")
        oscar.expect("* oscar was kicked from #mods by nora (enough of that)")
        expect(nora.log("#mods").locator(".line.presence").last).to_have_text(
            re.compile("oscar was removed by nora \\(enough of that\\)"))
        expect(nora.members.locator(".member")).to_have_text([re.compile("^nora")])
        # Out of the room on the server, not just off the page's list.
        oscar.send("/who #mods")
        oscar.expect("#mods: 1 present: nora")
    finally:
        oscar.close()


def test_a_failed_msg_opens_no_tab_and_errors_stay_where_they_were_caused(daemon, open_page):
    pia = open_page(daemon).login("pia").join("#quiet")
    quinn = daemon.line().login("quinn")
    try:
        type_line(pia, "/msg nobody are you there?")
        expect(pia.banner).to_contain_text("Not sent: nobody is not online")
        expect(pia.log("#quiet").locator(".line.error")).to_have_text(
            [re.compile("Not sent: nobody is not online")])
        expect(pia.title).to_have_text("#quiet")
        expect(pia.page.locator('.tab[data-conversation="@nobody"]')).to_have_count(0)

        # One that the server takes opens its tab and shows there.
        type_line(pia, "/msg quinn psst")
        expect(pia.title).to_have_text("@quinn")
        pia.expect_message("@quinn", "pia", "psst")
        quinn.expect("[pm pia -> quinn] psst")

        # An error answers the request that caused it, in the conversation it was typed in.
        pia.open("#quiet")
        type_line(pia, "/kick ghost")
        expect(pia.log("#quiet").locator(".line.error").last).to_contain_text("ghost")
        expect(pia.log("@quinn").locator(".line.error")).to_have_count(0)
    finally:
        quinn.close()


def test_away_and_back_are_confirmed_in_the_room(daemon, open_page):
    mona = open_page(daemon).login("mona").join("#cafe")
    mona.page.fill("#message-input", "/away at lunch")
    mona.page.press("#message-input", "Enter")
    expect(mona.log("#cafe").locator(".line.system").last).to_contain_text(
        "You are away: at lunch")
    mona.page.fill("#message-input", "/away")
    mona.page.press("#message-input", "Enter")
    expect(mona.log("#cafe").locator(".line.system").last).to_contain_text("You are back.")
