"""Property-based tests: no input, however odd, breaks chatd.

Hypothesis generates the input nobody writes by hand (split UTF-8 sequences,
stray CRs, NaN ids, nested garbage in every field) against the real service,
dispatcher and line protocol in memory, and checks what a user would notice:
no crash, no ``internal`` error, one answer per request, well-formed output,
and everyone else's chat unaffected.
"""

import json
import math

from fakes import BINARY, CLOSE, TEXT, FakeSink, frame
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chatd import commands
from chatd.errors import ChatError
from chatd.events import Ack, Error
from chatd.protocols.line import parse_json_request

FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# A burst this large keeps the flood limit out of the way, so the examples
# reach the parsers and handlers instead of "slow down".
ROOMY = {"rate": 1000.0, "burst": 10_000}

REQUEST_TYPES = sorted(set(spec[0] for spec in commands._COMMANDS.values()) | {"message"})
FIELDS = ["id", "nick", "room", "password", "since", "reason", "text", "to", "before",
          "limit", "old", "new", "topic", "invite_only"]
# Values that mean something to the service, so requests sometimes succeed.
MEANINGFUL = ["alice", "bob", "carol", "Alice", "dave", "#lobby", "#other", "#LOBBY", "", " ",
              "hi", "secret-pw", "0", "5", True, False, "/json", "\r", "\x1b[2J", "\u2028", "\x85"]

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(MEANINGFUL))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)


# The fields each request type reads, so a drawn request is often well formed.
SHAPES = {kind: set(args) for kind, args, _ in commands._COMMANDS.values()}
SHAPES.update(message={"room", "text"}, action={"room", "text"}, private={"to", "text"},
              join={"room", "password", "since"}, history={"room", "before", "since", "limit"},
              mode={"room", "invite_only", "password"})


@st.composite
def requests(draw):
    """A request dict: usually a real type with its own fields, sometimes anything."""
    kind = draw(st.one_of(st.sampled_from(REQUEST_TYPES), st.sampled_from(REQUEST_TYPES),
                          st.sampled_from(REQUEST_TYPES), json_values))
    value = st.one_of(st.sampled_from(MEANINGFUL), st.sampled_from(MEANINGFUL), json_values)
    names = sorted(SHAPES.get(kind, set()) | {"id"}) if isinstance(kind, str) else ["id"]
    fields = st.one_of(st.sampled_from(names), st.sampled_from(names), st.sampled_from(FIELDS))
    req = {}
    for name in draw(st.sets(fields, max_size=5)):
        if name == "text":
            req[name] = draw(st.one_of(st.sampled_from(["hello", "hi there"]),
                                       st.text(max_size=30), value))
        else:
            req[name] = draw(value)
    req["type"] = kind
    if draw(st.integers(0, 4)) == 0:
        req.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return req


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` split at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


# Pieces that steer random bytes toward the interesting paths: commands,
# JSON, line ends, broken UTF-8, controls, and numbers json cannot represent.
FRAGMENTS = [b"\n", b"\r\n", b"\r", b"/", b"//", b"/nick ", b"/join #lobby", b"/join #",
             b"/part", b"/msg bob ", b"/me ", b"/json\n", b"/quit bye\n", b"/kick bob",
             b"/topic ", b"/mode +k ", b"/history", b"/who", b"/rooms", b"/help\n",
             b'{"type":"message","text":"x","id":', b'{"type":', b'"join"', b'"room":"#lobby"',
             b"}", b"[", b"NaN", b"-Infinity", b"1e999", b"9" * 40, b"\xc3", b"\xff",
             b"\xe2\x80\xa8", b"\xc2\x85", b"\x1b[31m", b"\x00", b"\t", b" "]
byte_soup = st.lists(st.one_of(st.binary(max_size=30), st.sampled_from(FRAGMENTS),
                               st.text(max_size=20).map(lambda t: t.encode("utf-8"))),
                     max_size=25).map(b"".join)


def strict_json(line: str) -> dict:
    """RFC 8259 JSON: NaN and Infinity are not JSON, whatever Python accepts."""
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(line, parse_constant=refuse)


def output_lines(client) -> list[str]:
    """A client's output as lines, checking the framing every client relies on."""
    data = client.raw()
    assert data == b"" or data.endswith(b"\r\n"), data
    return data.decode("utf-8").split("\r\n")[:-1]  # raises if it is not UTF-8


def check_invariants(svc) -> None:
    """The service's state agrees with itself."""
    for key, room in svc.rooms.items():
        assert key == room.name.lower()
        assert room.members or room.joining, f"empty room {key} kept"
        for nick_key, s in room.members.items():
            assert s.attached and s in svc.sessions, s
            assert s.key == nick_key and s.rooms.get(key) is room, (s, key)
        by_format = {}
        for s in room.members.values():
            by_format.setdefault(s.fmt, set()).add(s)
        assert {fmt: set(w) for fmt, w in room.outlets.items()} == by_format
        assert room.guest_ops <= set(room.members.values())
    for s in svc.sessions:
        assert s.attached
        for key, room in s.rooms.items():
            assert svc.rooms.get(key) is room and room.members.get(s.key) is s
        assert s.current is None or s.current in s.rooms.values()
        if s.key is not None:
            assert svc.nicks.get(s.key) is s
    for key, s in svc.nicks.items():
        assert s.key == key and s in svc.sessions
    # (Connections are counted by chatd.admission, outside the service.)


# -- text commands -------------------------------------------------------------
@FUZZ
@given(st.one_of(st.text(), st.text().map(lambda t: "/" + t),
                 st.builds(lambda c, rest: f"/{c} {rest}",
                           st.sampled_from(sorted(commands._COMMANDS)), st.text())))
def test_parse_returns_a_request_or_refuses(line):
    try:
        req = commands.parse(line)
    except ChatError as e:
        assert e.code in ("unknown_command", "missing_argument")
        return
    if req is None:
        assert not line.strip()
    else:
        assert isinstance(req, dict) and isinstance(req["type"], str)
        assert req["type"] in REQUEST_TYPES


# -- JSON requests -------------------------------------------------------------------------
# Numbers past what a float or Python's int parser takes (4300 digits) are JSON too.
huge_numbers = st.integers(4000, 5000).map(lambda n: "9" * n) | st.sampled_from(
    ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1" + "0" * 400 + ".5"])
json_texts = st.one_of(
    st.text(),
    json_values.map(json.dumps),
    requests().map(json.dumps),
    huge_numbers.map(lambda n: '{"type": "ping", "id": ' + n + "}"),
)


@FUZZ
@given(json_texts)
def test_json_request_parses_or_refuses(text):
    try:
        req = parse_json_request(text)
    except ChatError as e:
        assert e.code in ("invalid_json", "bad_request")
        return
    assert isinstance(req, dict)


@FUZZ
@given(st.lists(st.one_of(requests().map(json.dumps), json_texts.filter(lambda t: "\n" not in t)),
                min_size=1, max_size=6))
def test_json_lines_get_one_strict_json_answer_each(make_chat, lines):
    chat = make_chat(**ROOMY)
    chat.line("bob", "#lobby")
    client = chat.line("alice", "#lobby", json_mode=True)
    for line in lines:
        if not client.open:
            break
        client.send(line)
        if not line.strip():
            continue
        events = [strict_json(out) for out in output_lines(client)]
        answers = [e for e in events if e["type"] in ("ack", "error")]
        assert all(e.get("code") != "internal" for e in answers), events
        try:
            is_pong = parse_json_request(line).get("type") == "pong"
        except ChatError:
            is_pong = False
        assert len(answers) == (0 if is_pong else 1), (line, events)
    check_invariants(chat.service)


# -- the line protocol on arbitrary bytes ----------------------------------------------
@FUZZ
@given(data=byte_soup, cuts=st.lists(st.integers(min_value=0), max_size=8),
       json_mode=st.booleans())
def test_line_protocol_survives_any_bytes(make_chat, data, cuts, json_mode):
    chat = make_chat(max_line=80, max_message=60, **ROOMY)
    # bob opens the room, so he is its operator and the fuzzer is not.
    bob = chat.line("bob", "#lobby")
    carol = chat.line("carol", "#lobby")
    fuzzer = chat.line("alice", "#lobby", json_mode=json_mode)
    for chunk in chunked(data, cuts):
        fuzzer.proto.dataReceived(chunk)
    check_invariants(chat.service)

    for line in output_lines(fuzzer):
        if json_mode:
            event = strict_json(line)
            assert isinstance(event, dict) and isinstance(event.get("type"), str), line
            assert event.get("code") != "internal", line
        else:
            assert not line.startswith("! error internal"), line
    output_lines(carol)  # whatever the fuzzer caused there is well formed too

    bob.send("still here")
    assert carol.lines() == ["[#lobby] <bob> still here"]


# -- WebSocket frames ------------------------------------------------------------------------
ws_payloads = st.one_of(byte_soup, json_texts.map(lambda t: t.encode("utf-8")),
                        requests().map(lambda r: json.dumps(r).encode("utf-8")))


@FUZZ
@given(frames=st.lists(st.tuples(ws_payloads, st.sampled_from([TEXT, TEXT, TEXT, BINARY])),
                       min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_websocket_survives_any_frames(ws, frames, cuts):
    chat, connect = ws(max_frame=8192, **ROOMY)
    bob = chat.line("bob", "#lobby")
    carol = chat.line("carol", "#lobby")
    client = connect()
    client.send({"type": "nick", "nick": "alice"})
    client.send({"type": "join", "room": "#lobby"})
    client.frames()
    data = b"".join(frame(payload, opcode) for payload, opcode in frames)
    for chunk in chunked(data, cuts):
        client.proto.dataReceived(chunk)
    check_invariants(chat.service)

    for opcode, payload in client.frames():
        if opcode == CLOSE:
            continue  # invalid UTF-8 in a text frame closes with 1007: the protocol's rule
        assert opcode == TEXT, (opcode, payload)
        event = strict_json(payload.decode("utf-8"))
        assert isinstance(event, dict) and isinstance(event.get("type"), str), event
        assert event.get("code") != "internal", event
    output_lines(carol)

    bob.send("still here")
    assert carol.lines() == ["[#lobby] <bob> still here"]


# -- the dispatcher on arbitrary requests -------------------------------------------------
def Sink(service):
    """Reports the connection gone when the service closes it, like a transport."""
    return FakeSink(service=service)


def same_id(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2), requests()), min_size=1, max_size=12))
def test_every_request_gets_one_answer(make_chat, script):
    chat = make_chat(**ROOMY)
    svc = chat.service
    sinks = []
    for i, nick in enumerate(["alice", "bob", "carol"]):
        sink = Sink(svc)
        sink.session = svc.connect(sink, f"10.0.0.{i}")
        sinks.append(sink)
        chat.dispatcher.handle(sink.session, {"type": "nick", "nick": nick})
        chat.dispatcher.handle(sink.session, {"type": "join", "room": "#lobby"})
    for sink in sinks:
        sink.take()

    for who, req in script:
        sink = sinks[who]
        if not sink.session.attached:
            continue
        for other in sinks:
            other.take()
        chat.dispatcher.handle(sink.session, req)
        # A login to an account that has been guessed at waits up to --login-delay.
        chat.clock.advance(svc.limits.login_delay)
        answers = [e for e in sink.take() if isinstance(e, (Ack, Error))]
        if req["type"] == "pong":
            assert answers == []
        else:
            assert len(answers) == 1, (req, answers)
            [answer] = answers
            event(f"{answer.type} {answer.request}" if isinstance(answer, Ack)
                  else f"error {answer.code}")
            assert same_id(answer.id, req.get("id")), (req, answer)
            if isinstance(answer, Error):
                assert answer.code != "internal", (req, answer)
        check_invariants(svc)
        # Nobody else is ever answered for this request.
        for other in sinks:
            if other is not sink:
                assert not [e for e in other.take() if isinstance(e, (Ack, Error))]


# -- one client cannot forge lines on another's terminal ------------------------------------
BREAKS = ["\r", "\n", "\x0b", "\x0c", "\x1b", "\x85", "\x9b", "\u2028", "\u2029", "\x00"]
sneaky_text = st.lists(st.one_of(st.text(max_size=10), st.sampled_from(BREAKS)),
                       max_size=8).map("".join)


def is_clean_line(line: str) -> bool:
    """One line a terminal shows as one line, with no escape sequences in it."""
    return line.splitlines() == [line] and not any(
        ord(c) < 0x20 and c != "\t" or 0x7f <= ord(c) <= 0x9f for c in line)


@FUZZ
@given(how=st.sampled_from(["say", "me", "msg", "part", "quit", "topic", "kick", "json"]),
       text=sneaky_text)
def test_text_cannot_forge_lines_for_others(make_chat, how, text):
    chat = make_chat(**ROOMY)
    mallory = chat.line("mallory", "#lobby")  # first in: the room's operator
    victim = chat.line("victim", "#lobby")
    chat.line("extra", "#lobby")  # someone to kick
    sends = {
        "say": lambda: mallory.proto.dataReceived(b"//" + text.encode("utf-8") + b"\n"),
        "me": lambda: mallory.send("/me " + text),
        "msg": lambda: mallory.send("/msg victim " + text),
        "part": lambda: mallory.send("/part #lobby " + text),
        "quit": lambda: mallory.send("/quit " + text),
        "topic": lambda: mallory.send("/topic #lobby " + text),
        "kick": lambda: mallory.send("/kick extra " + text),
        "json": lambda: (mallory.send("/json"),
                         mallory.send_json({"type": "message", "text": text})),
    }
    sends[how]()
    for line in victim.lines():
        assert is_clean_line(line), line
