"""IRC channel and people commands, and how IRC users meet the other front ends."""

import pytest
from irchelp import IrcChat


@pytest.fixture
def irc(chat):
    return IrcChat(chat)


def test_join_part_and_names_with_operator_prefix(irc):
    alice = irc.client("alice")
    alice.send("JOIN #tea")
    assert alice.lines() == [":alice!alice@chatd JOIN #tea", ":chatd 353 alice = #tea :@alice",
                             ":chatd 366 alice #tea :End of /NAMES list."]
    bob = irc.client("bob")
    bob.send("JOIN #tea,#cake")
    assert bob.lines() == [":bob!bob@chatd JOIN #tea", ":chatd 353 bob = #tea :@alice bob",
                           ":chatd 366 bob #tea :End of /NAMES list.",
                           ":bob!bob@chatd JOIN #cake", ":chatd 353 bob = #cake :@bob",
                           ":chatd 366 bob #cake :End of /NAMES list."]
    assert alice.lines() == [":bob!bob@chatd JOIN #tea"]
    bob.send("PART #tea :see you")
    assert bob.lines() == [":bob!bob@chatd PART #tea :see you"]
    assert alice.lines() == [":bob!bob@chatd PART #tea :see you"]
    bob.send("JOIN 0")
    assert bob.lines() == [":bob!bob@chatd PART #cake"]
    alice.send("NAMES #tea")
    assert alice.lines() == [":chatd 353 alice = #tea :@alice",
                             ":chatd 366 alice #tea :End of /NAMES list."]


def test_join_errors_403_442_461_405(make_chat):
    chat = make_chat(max_rooms_per_session=1)
    alice = IrcChat(chat).client("alice", "#one")
    alice.send("JOIN bad", "PART #nowhere", "JOIN", "JOIN #two")
    lines = alice.lines()
    assert lines[0].startswith(":chatd 403 alice bad :")
    assert lines[1] == ":chatd 442 alice #nowhere :you are not in #nowhere"
    assert lines[2] == ":chatd 461 alice JOIN :Not enough parameters"
    assert lines[3] == ":chatd 405 alice #two :you may be in at most 1 rooms"


def test_keys_invite_only_and_bans_473_474_475(irc):
    alice = irc.client("alice", "#club")
    bob = irc.client("bob")
    alice.send("MODE #club +k sesame")
    assert alice.lines() == [":alice!alice@chatd MODE #club -i+k *"]
    bob.send("JOIN #club")
    assert bob.lines() == [":chatd 475 bob #club :#club needs a password: /join #club PASSWORD"]
    bob.send("JOIN #club sesame")
    assert bob.lines()[0] == ":bob!bob@chatd JOIN #club"
    alice.send("MODE #club -k", "MODE #club +i", "KICK #club bob :out")
    assert alice.lines()[-1] == ":alice!alice@chatd KICK #club bob :out"
    assert bob.lines()[-1] == ":alice!alice@chatd KICK #club bob :out"
    bob.send("JOIN #club")
    assert bob.lines() == [":chatd 473 bob #club :#club is invite-only; ask an operator to "
                           "/invite you"]
    alice.send("INVITE bob #club")
    assert alice.lines() == [":chatd 341 alice bob #club"]
    assert bob.lines() == [":alice!alice@chatd INVITE bob #club"]
    alice.send("MODE #club -i", "MODE #club +b bob!*@*")
    assert alice.lines()[-1] == ":alice!alice@chatd MODE #club +b bob!*@*"
    bob.send("JOIN #club")
    assert bob.lines() == [":chatd 474 bob #club :you are banned from #club"]
    alice.send("MODE #club b")
    assert alice.lines() == [":chatd 367 alice #club bob!*@*",
                             ":chatd 368 alice #club :End of channel ban list"]


@pytest.mark.parametrize("mask", ["bob", "bob!*@*", "*!*bob@chatd", "*!bob@chatd",
                                  "*!~bob@*", "bob!bob@chatd"])
def test_ban_masks_that_irc_clients_build_name_the_nick(irc, mask):
    alice = irc.client("alice", "#club")
    bob = irc.client("bob")
    alice.send(f"MODE #club +b {mask}")  # irssi's /ban bob: *!*bob@chatd, from WHO
    assert alice.lines() == [":alice!alice@chatd MODE #club +b bob!*@*"]
    bob.send("JOIN #club")
    assert bob.lines() == [":chatd 474 bob #club :you are banned from #club"]
    alice.send(f"MODE #club -b {mask}")
    assert alice.lines() == [":alice!alice@chatd MODE #club -b bob!*@*"]


def test_operator_commands_need_operator_482_and_kick_target_441(irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea")
    alice.raw()
    bob.send("KICK #tea alice", "TOPIC #tea :mine", "MODE #tea +o bob")
    assert bob.lines() == [":chatd 482 bob #tea :only an operator of #tea can do that"] * 3
    alice.send("KICK #tea nobody")
    assert alice.lines() == [":chatd 441 alice nobody #tea :nobody is not in #tea"]
    alice.send("MODE #tea +o bob")
    assert bob.lines() == [":alice!alice@chatd MODE #tea +o bob"]
    bob.send("NAMES #tea")
    assert bob.lines()[0] == ":chatd 353 bob = #tea :@alice @bob"
    alice.send("MODE #tea +x")
    assert alice.lines()[-1] == ":chatd 472 alice x :is unknown mode char to me"
    alice.send("MODE #tea +b *!*@host", "INVITE nobody #tea")
    assert alice.lines() == [
        ":chatd 432 alice * :a nick is 1-24 letters, digits, '_' or '-', starting with a letter",
        ":chatd 401 alice nobody :nobody is not online"]


def test_channel_mode_query_324(irc):
    alice = irc.client("alice", "#tea")
    alice.send("MODE #tea")
    assert alice.lines() == [":chatd 324 alice #tea +", ":chatd 329 alice #tea 1700000000"]
    alice.send("MODE #tea +ik sesame")
    alice.raw()
    alice.send("MODE #tea", "MODE #nosuch")
    assert alice.lines() == [":chatd 324 alice #tea +ik sesame",
                             ":chatd 329 alice #tea 1700000000",
                             ":chatd 403 alice #nosuch :No such channel"]


def test_user_modes_221_501_502(irc):
    alice = irc.client("alice")
    irc.client("bob")
    alice.send("MODE alice", "MODE alice +Z", "MODE bob", "MODE nobody +i")
    assert alice.lines() == [":chatd 221 alice :+", ":chatd 501 alice :Unknown MODE flag",
                             ":chatd 502 alice :Cant change mode for other users",
                             ":chatd 401 alice nobody :No such nick/channel"]


def test_own_user_modes_are_answered_as_irssi_expects_on_connect(irc):
    alice = irc.client("alice")
    alice.send("MODE alice +i")  # what irssi sends after the welcome
    assert alice.lines() == [":alice MODE alice :+i"]
    alice.send("MODE alice +i")  # no change, no line
    assert alice.lines() == []
    alice.send("MODE Alice +wZ", "MODE alice")
    assert alice.lines() == [":alice MODE alice :+w", ":chatd 501 alice :Unknown MODE flag",
                             ":chatd 221 alice :+iw"]
    alice.send("MODE alice -i+o", "MODE alice")  # +o: ignored, as servers do
    assert alice.lines() == [":alice MODE alice :-i", ":chatd 221 alice :+w"]


def test_topic_query_set_and_331_332_333(chat, irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea")
    alice.raw()
    bob.send("TOPIC #tea")
    assert bob.lines() == [":chatd 331 bob #tea :No topic is set"]
    alice.send("TOPIC #tea :Earl Grey only")
    assert alice.lines() == [":alice!alice@chatd TOPIC #tea :Earl Grey only"]
    assert bob.lines() == [":alice!alice@chatd TOPIC #tea :Earl Grey only"]
    bob.send("TOPIC #tea")
    assert bob.lines() == [":chatd 332 bob #tea :Earl Grey only",
                           f":chatd 333 bob #tea alice {int(chat.clock.seconds())}"]
    carol = irc.client("carol")
    carol.send("JOIN #tea")
    assert carol.lines()[1:3] == [":chatd 332 carol #tea :Earl Grey only",
                                  f":chatd 333 carol #tea alice {int(chat.clock.seconds())}"]


def test_privmsg_and_notice_across_front_ends(chat, irc):
    alice = irc.client("alice", "#tea")
    telnet = chat.line("bob", "#tea")
    script = chat.line("carol", "#tea", json_mode=True)
    alice.raw()
    telnet.raw()
    alice.send("PRIVMSG #tea :hello everyone")
    assert telnet.lines() == ["[#tea] <alice> hello everyone"]
    assert '"text":"hello everyone"' in script.lines()[0]
    assert alice.lines() == []  # no echo-message: the sender does not get it back
    telnet.send("hi alice", "/me waves", "/msg alice psst")
    assert alice.lines() == [":bob!bob@chatd PRIVMSG #tea :hi alice",
                             ":bob!bob@chatd PRIVMSG #tea :\x01ACTION waves\x01",
                             ":bob!bob@chatd PRIVMSG alice :psst"]
    telnet.raw()
    alice.send("PRIVMSG bob :back at you", "NOTICE #tea :a notice",
               "PRIVMSG #tea :\x01ACTION nods\x01")
    assert telnet.lines() == ["[pm alice -> bob] back at you", "[#tea] <alice> a notice",
                              "[#tea] * alice nods"]


def test_privmsg_errors_401_404_411_412_and_notice_never_answered(irc):
    alice = irc.client("alice", "#tea")
    alice.send("PRIVMSG nobody :hi", "PRIVMSG #other :hi", "PRIVMSG", "PRIVMSG #tea",
               "NOTICE nobody :hi", "NOTICE #other :hi", "NOTICE #tea")
    assert alice.lines() == [":chatd 401 alice nobody :nobody is not online",
                             ":chatd 404 alice #other :you are not in #other",
                             ":chatd 411 alice :No recipient given (PRIVMSG)",
                             ":chatd 412 alice :No text to send"]


def test_formatting_codes_are_taken_out(chat, irc):
    alice = irc.client("alice", "#tea")
    telnet = chat.line("bob", "#tea")
    alice.send("PRIVMSG #tea :\x02bold\x02 and \x0304,01red\x03 text")
    assert telnet.lines() == ["[#tea] <alice> bold and red text"]


def test_long_message_from_another_front_end_is_split_on_characters(chat, irc):
    alice = irc.client("alice", "#tea")
    telnet = chat.line("bob", "#tea")
    alice.raw()
    text = "ünïcødé " * 150  # 1200 characters, about 1800 bytes
    telnet.send(text)
    lines = alice.lines()
    assert len(lines) == 4
    assert all(len(line.encode("utf-8")) + 2 <= 512 for line in lines)
    assert "".join(line.split(" :", 1)[1] for line in lines) == text


def test_nick_change_is_seen_by_everyone_sharing_a_room(chat, irc):
    alice = irc.client("alice", "#tea")
    telnet = chat.line("bob", "#tea")
    alice.raw()
    chat.clock.advance(10)
    alice.send("NICK alicia")
    assert alice.lines() == [":alice!alice@chatd NICK alicia"]
    assert telnet.lines() == ["* alice is now known as alicia"]
    chat.clock.advance(10)
    telnet.send("/nick robert")
    assert alice.lines() == [":bob!bob@chatd NICK robert"]


def test_who_whois_list_ison_userhost(chat, irc):
    alice = irc.client("alice", "#tea")
    irc.client("bob", "#tea")
    chat.line("carol", "#cake")
    alice.raw()
    alice.send("WHO #tea")
    assert alice.lines() == [
        # RFC 2812: <channel> <user> <host> <server> <nick> <H|G>[*][@] :<hopcount> <realname>
        ":chatd 352 alice #tea alice chatd chatd alice H@ :0 Alice Example",
        ":chatd 352 alice #tea bob chatd chatd bob H :0 Bob Example",
                             ":chatd 315 alice #tea :End of /WHO list."]
    alice.send("WHOIS bob")
    assert alice.lines() == [":chatd 311 alice bob bob chatd * :Bob Example",
                             ":chatd 319 alice bob :#tea", ":chatd 312 alice bob chatd :chatd",
                             ":chatd 317 alice bob 0 1700000000 :seconds idle, signon time",
                             ":chatd 318 alice bob :End of /WHOIS list."]
    alice.send("WHOIS nobody")
    assert alice.lines() == [":chatd 401 alice nobody :No such nick/channel",
                             ":chatd 318 alice nobody :End of /WHOIS list."]
    alice.send("LIST")
    assert alice.lines() == [":chatd 321 alice Channel :Users  Name",
                             ":chatd 322 alice #cake 1 :", ":chatd 322 alice #tea 2 :",
                             ":chatd 323 alice :End of /LIST"]
    alice.send("ISON bob carol dave", "USERHOST bob carol")
    assert alice.lines() == [":chatd 303 alice :bob carol",
                             ":chatd 302 alice :bob=+bob@chatd carol=+carol@chatd"]


def test_away_305_306_and_301_in_whois(irc):
    alice = irc.client("alice")
    bob = irc.client("bob")
    alice.send("AWAY :at lunch")
    assert alice.lines() == [":chatd 306 alice :You have been marked as being away"]
    bob.send("WHOIS alice", "USERHOST alice", "WHO alice")
    lines = bob.lines()
    assert ":chatd 301 bob alice :at lunch" in lines
    assert ":chatd 302 bob :alice=-alice@chatd" in lines
    assert ":chatd 352 bob * alice chatd chatd alice G :0 Alice Example" in lines
    bob.send("PRIVMSG alice :lunch?", "NOTICE alice :psst")
    assert bob.lines() == [":chatd 301 bob alice :at lunch"]  # for the PRIVMSG only
    assert alice.lines() == [":bob!bob@chatd PRIVMSG alice :lunch?",
                             ":bob!bob@chatd PRIVMSG alice :psst"]
    alice.send("AWAY")
    assert alice.lines() == [":chatd 305 alice :You are no longer marked as being away"]
    bob.send("PRIVMSG alice :back?")
    assert bob.lines() == []


def test_away_notify_tells_room_mates_on_every_front_end(chat, irc):
    alice = irc.client("alice", "#tea", caps=("away-notify",))
    bob = irc.client("bob", "#tea", caps=("away-notify",))
    carol = irc.client("carol", "#tea")
    script = chat.line("dave", "#tea", json_mode=True)
    telnet = chat.line("erin", "#tea")
    for c in (alice, bob, carol, script):
        c.raw()
    alice.send("AWAY :brb")
    assert alice.lines() == [":chatd 306 alice :You have been marked as being away"]
    assert bob.lines() == [":alice!alice@chatd AWAY :brb"]
    assert carol.lines() == []  # no away-notify: nothing
    assert '"type":"away","nick":"alice","text":"brb"' in script.raw().decode()
    assert telnet.lines() == []  # text mode stays quiet
    script.send('{"type": "away", "text": "gone"}')
    assert alice.lines() == [":dave!dave@chatd AWAY :gone"]
    assert bob.lines() == [":dave!dave@chatd AWAY :gone"]
    alice.send("AWAY")
    assert bob.lines() == [":alice!alice@chatd AWAY"]
    frank = irc.client("frank")
    frank.send("AWAY :not here", "JOIN #tea")
    assert bob.lines() == [":frank!frank@chatd JOIN #tea", ":frank!frank@chatd AWAY :not here"]
    assert carol.lines() == [":frank!frank@chatd JOIN #tea"]


def test_what_the_room_says_during_a_join_comes_after_join_and_names(chat, irc, monkeypatch):
    from twisted.internet.defer import Deferred
    telnet = chat.line("bob", "#tea")
    telnet.send("before")
    alice = irc.client("alice")
    store = chat.service.store
    real = store.history
    pending = []

    def slow_history(*args, **kw):
        d = Deferred()
        pending.append((real(*args, **kw), d))
        return d
    monkeypatch.setattr(store, "history", slow_history)
    alice.send("JOIN #tea")
    telnet.send("during")
    [(rows, d)] = pending
    rows.addCallback(d.callback)
    assert alice.lines() == [":alice!alice@chatd JOIN #tea", ":chatd 353 alice = #tea :@bob alice",
                             ":chatd 366 alice #tea :End of /NAMES list.",
                             ":bob!bob@chatd PRIVMSG #tea :before",
                             ":bob!bob@chatd PRIVMSG #tea :during"]
    alice.send("JOIN #tea")  # already there: nothing, as on IRC servers
    assert alice.lines() == []


def test_history_unavailable_notice_comes_after_the_join(chat, irc, monkeypatch):
    from twisted.internet.defer import fail

    from chatd.store import StoreUnavailable
    alice = irc.client("alice")
    monkeypatch.setattr(chat.service.store, "history",
                        lambda *a, **kw: fail(StoreUnavailable("down")))
    alice.send("JOIN #tea")
    assert alice.lines() == [":alice!alice@chatd JOIN #tea", ":chatd 353 alice = #tea :@alice",
                             ":chatd 366 alice #tea :End of /NAMES list.",
                             ":chatd NOTICE alice :history is unavailable right now "
                             "(the store is down)"]


def test_who_and_whois_mark_a_server_operator(chat, irc):
    chat.service.reconfigure(operators=["root"])
    chat.line("root").send("/register correct horse battery", "/quit")
    op = irc.client()
    op.send("PASS :correct horse battery", "NICK root", "USER r 0 * :Root Example", "JOIN #ops")
    alice = irc.client("alice", "#ops")
    alice.send("WHO #ops", "WHOIS root")
    lines = alice.lines()
    # H, then * (server operator), then @ (room operator), as RFC 2812 orders them.
    assert lines[:3] == [":chatd 352 alice #ops root chatd chatd root H*@ :0 Root Example",
                         ":chatd 352 alice #ops alice chatd chatd alice H :0 Alice Example",
                         ":chatd 315 alice #ops :End of /WHO list."]
    assert ":chatd 313 alice root :is a server operator" in lines
    assert ":chatd 330 alice root root :is logged in as" in lines


def test_names_and_who_of_a_room_that_does_not_exist_end_the_list(irc):
    alice = irc.client("alice")
    alice.send("NAMES #nosuch", "WHO #nosuch")
    assert alice.lines() == [":chatd 366 alice #nosuch :End of /NAMES list.",
                             ":chatd 315 alice #nosuch :End of /WHO list."]


def test_whowas_after_a_whois_401_as_irssi_sends_it(irc):
    alice = irc.client("alice")
    alice.send("WHOIS gone", "WHOWAS gone", "WHOWAS")
    assert alice.lines() == [":chatd 401 alice gone :No such nick/channel",
                             ":chatd 318 alice gone :End of /WHOIS list.",
                             ":chatd 406 alice gone :There was no such nickname",
                             ":chatd 369 alice gone :End of WHOWAS",
                             ":chatd 461 alice WHOWAS :Not enough parameters"]


def test_version_and_time(chat, irc):
    alice = irc.client("alice")
    alice.send("VERSION", "TIME")
    lines = alice.lines()
    assert lines[0].startswith(":chatd 351 alice chatd-") and " chatd :" in lines[0]
    assert [line.split()[1] for line in lines[1:-1]] == ["005", "005"]
    assert lines[-1] == ":chatd 391 alice chatd 1700000000 0 :Tuesday November 14 2023 -- " \
        "22:13:20 +00:00"


def test_userhost_marks_a_server_operator(chat, irc):
    chat.service.reconfigure(operators=["root"])
    chat.line("root").send("/register correct horse battery", "/quit")
    op = irc.client()
    op.send("PASS :correct horse battery", "NICK root", "USER r 0 * :Root Example")
    alice = irc.client("alice")
    alice.send("USERHOST root alice")
    assert alice.lines() == [":chatd 302 alice :root*=+root@chatd alice=+alice@chatd"]


def test_list_shows_every_room_across_chatd_pages_and_filters_by_name(chat, irc, monkeypatch):
    import chatd.service
    monkeypatch.setattr(chatd.service, "ROOMS_PAGE", 2)  # chatd lists rooms a page at a time
    for i, room in enumerate(("#a", "#b", "#c", "#d", "#e")):
        irc.client(f"u{i}", room)
    alice = irc.client("alice")
    alice.send("LIST")
    assert alice.lines() == [":chatd 321 alice Channel :Users  Name"] + [
        f":chatd 322 alice {room} 1 :" for room in ("#a", "#b", "#c", "#d", "#e")] + [
        ":chatd 323 alice :End of /LIST"]
    alice.send("LIST #E,#b")
    assert alice.lines() == [":chatd 321 alice Channel :Users  Name",
                             ":chatd 322 alice #b 1 :", ":chatd 322 alice #e 1 :",
                             ":chatd 323 alice :End of /LIST"]


def test_a_private_action_reaches_irc_as_an_action_and_others_as_text(chat, irc):
    alice = irc.client("alice")
    bob = irc.client("bob")
    telnet = chat.line("carol")
    telnet.raw()
    alice.send("PRIVMSG bob :\x01ACTION waves\x01", "PRIVMSG carol :\x01ACTION nods\x01")
    assert bob.lines() == [":alice!alice@chatd PRIVMSG bob :\x01ACTION waves\x01"]
    assert telnet.lines() == ["[pm alice -> carol] * alice nods"]


def test_invite_of_someone_already_in_the_room_is_443(irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea")
    alice.raw()
    alice.send("INVITE Bob #TEA")
    assert alice.lines() == [":chatd 443 alice bob #TEA :is already on channel"]
    assert bob.lines() == []
