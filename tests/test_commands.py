"""Text-mode commands parsed into the request schema the dispatcher serves."""

import pytest

from chatd.commands import parse
from chatd.dispatch import Dispatcher
from chatd.errors import ChatError
from chatd.helptext import HELP_LINES


@pytest.mark.parametrize("line,request_", [
    ("hello world", {"type": "message", "text": "hello world"}),
    ("  indented", {"type": "message", "text": "  indented"}),
    ("//slash at start", {"type": "message", "text": "/slash at start"}),
    ("/nick alice", {"type": "nick", "nick": "alice"}),
    ("/NICK alice", {"type": "nick", "nick": "alice"}),
    ("/join #tea", {"type": "join", "room": "#tea"}),
    ("/part", {"type": "part"}),
    ("/part #tea", {"type": "part", "room": "#tea"}),
    ("/part #tea gone home", {"type": "part", "room": "#tea", "reason": "gone home"}),
    ("/part gone home", {"type": "part", "reason": "gone home"}),
    ("/leave #tea", {"type": "part", "room": "#tea"}),
    ("/msg bob hi there  bob", {"type": "private", "to": "bob", "text": "hi there  bob"}),
    ("/me waves", {"type": "action", "text": "waves"}),
    ("/who", {"type": "who"}),
    ("/who #tea", {"type": "who", "room": "#tea"}),
    ("/names #tea", {"type": "who", "room": "#tea"}),
    ("/rooms", {"type": "rooms"}),
    ("/list", {"type": "rooms"}),
    ("/help", {"type": "help"}),
    ("/ping", {"type": "ping"}),
    ("/pong", {"type": "pong"}),
    ("/quit", {"type": "quit"}),
    ("/quit off to bed", {"type": "quit", "reason": "off to bed"}),
    ("/json", {"type": "json"}),
])
def test_parse(line, request_):
    assert parse(line) == request_


@pytest.mark.parametrize("line", ["", "   ", "\t"])
def test_blank_is_nothing(line):
    assert parse(line) is None


@pytest.mark.parametrize("line,message", [
    ("/nick", "usage: /nick NAME"),
    ("/nick   ", "usage: /nick NAME"),
    ("/join", "usage: /join #room"),
    ("/msg", "usage: /msg NICK text"),
    ("/msg bob", "usage: /msg NICK text"),
    ("/me", "usage: /me text"),
])
def test_missing_arguments(line, message):
    with pytest.raises(ChatError) as e:
        parse(line)
    assert (e.value.code, e.value.message) == ("missing_argument", message)


@pytest.mark.parametrize("line", ["/frob", "/", "/ nick alice"])
def test_unknown_command(line):
    with pytest.raises(ChatError) as e:
        parse(line)
    assert e.value.code == "unknown_command"


def test_every_parsed_type_is_served():
    # Every command a person can type maps to something the dispatcher (or, for
    # /json, the line protocol itself) answers.
    served = set(Dispatcher(service=None)._handlers) | {"pong", "json"}
    for line in HELP_LINES:
        if line.startswith("/"):
            command = line.split()[0]
            args = {"/nick": " a", "/join": " #a", "/msg": " a b", "/me": " x",
                    "/register": " p", "/login": " a p", "/resume": " a t", "/password": " o n",
                    "/kick": " a",
                    "/ban": " a", "/op": " a", "/mode": " +i", "/invite": " a",
                    "/wall": " x", "/kill": " a", "/gban": " nick:a 0", "/ungban": " nick:a"}
            assert parse(command + args.get(command, ""))["type"] in served
