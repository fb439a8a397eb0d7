"""IRC lines: parsing with IRCv3 tags, formatting, the 512-byte split, ISUPPORT, SASL PLAIN."""

import base64

import pytest

from chatd.irc.caps import Caps, SaslError, sasl_plain
from chatd.irc.isupport import tokens
from chatd.irc.message import ParseError, line, parse, split_text
from chatd.limits import Limits
from chatd.service import ChatService


def test_parse_plain_and_trailing():
    m = parse("privmsg #tea :hello  there ")
    assert (m.command, m.params, m.tags, m.source) == ("PRIVMSG", ("#tea", "hello  there "),
                                                        {}, None)
    assert parse("JOIN #a,#b key1").params == ("#a,#b", "key1")
    assert parse("NICK   alice").params == ("alice",)
    assert parse("PING :").params == ("",)
    assert parse("") is None and parse("   ") is None


def test_parse_tags_and_source_with_escapes():
    m = parse(r"@time=2026-01-01T00:00:00.000Z;+draft/x=a\sb\:c\\d;flag :nick!u@h PRIVMSG #r :x")
    assert m.tags == {"time": "2026-01-01T00:00:00.000Z", "+draft/x": "a b;c\\d", "flag": ""}
    assert m.source == "nick!u@h"
    assert m.params == ("#r", "x")
    with pytest.raises(ParseError):
        parse("@a=b")


def test_line_formats_trailing_only_where_needed_or_asked():
    assert line("JOIN", "#tea", source="a!a@chatd") == ":a!a@chatd JOIN #tea"
    assert line("PRIVMSG", "#tea", "hi there") == "PRIVMSG #tea :hi there"
    assert line("PRIVMSG", "#tea", "hi", trail=True) == "PRIVMSG #tea :hi"
    assert line("PART", "#tea", "") == "PART #tea :"
    assert line("X", ":colon") == "X ::colon"
    assert line("PRIVMSG", "#t", "x", tags={"time": "t", "msgid": "a b;c"}, trail=True) == \
        r"@time=t;msgid=a\sb\:c PRIVMSG #t :x"


def test_split_text_keeps_characters_whole_and_fits_the_budget():
    text = "é" * 300 + " and 🎉 " * 50
    pieces = split_text(text, 100)
    assert "".join(pieces) == text
    assert all(len(p.encode("utf-8")) <= 100 for p in pieces)
    assert split_text("short", 100) == ["short"]


def test_split_text_prefers_a_space_near_the_end():
    pieces = split_text("word " * 40, 50)
    assert all(p.endswith(" ") for p in pieces[:-1])
    assert "".join(pieces) == "word " * 40


def test_isupport_tells_chatds_real_limits():
    service = ChatService(Limits(max_nick=16, max_room=32, max_rooms_per_session=7))
    toks = dict(t.partition("=")[::2] for t in tokens(service, "net"))
    assert toks["NICKLEN"] == "16"
    assert toks["CHANNELLEN"] == "32"
    assert toks["CHANLIMIT"] == "#:7"
    assert toks["TOPICLEN"] == "300"
    assert toks["CHANTYPES"] == "#"
    assert toks["PREFIX"] == "(o)@"
    assert toks["CHANMODES"] == "b,k,,i"
    assert toks["CASEMAPPING"] == "ascii"
    assert toks["NETWORK"] == "net"


def test_caps_ls_req_all_or_nothing():
    caps = Caps()
    [offer] = caps.ls("302")
    assert "sasl=PLAIN" in offer.split() and "server-time" in offer.split()
    assert caps.negotiating
    assert caps.req("server-time bogus") == (False, "server-time bogus")
    assert not caps.has("server-time")
    assert caps.req("server-time echo-message batch") == (True, "server-time echo-message batch")
    assert caps.rendering() == {"server-time", "echo-message"}
    caps.req("-echo-message")
    assert caps.listing() == "batch server-time"
    caps.end()
    assert not caps.negotiating


def test_sasl_plain():
    payload = base64.b64encode(b"\0alice\0s3cret pw").decode()
    assert sasl_plain(payload) == ("alice", "s3cret pw")
    assert sasl_plain(base64.b64encode(b"Alice\0alice\0pw").decode()) == ("alice", "pw")
    for bad in ("!!!", base64.b64encode(b"alice\0pw").decode(),
                base64.b64encode(b"bob\0alice\0pw").decode()):
        with pytest.raises(SaslError):
            sasl_plain(bad)
