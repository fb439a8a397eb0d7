"""Property-based: no IRC input, however odd, breaks the IRC front end or its neighbours.

Hypothesis draws lines from real IRC commands with meaningful and odd
parameters (split UTF-8, stray CRs, NULs, huge tags), fed to a registered IRC
client in one room with a line-protocol user.  What a user would notice:
no internal error, well-formed CRLF output where no line passes 512 bytes
(tags aside), and the other user's chat unaffected.
"""

from conftest import Chat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irchelp import IrcChat

from chatd.irc import commands

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
WORDS = ["#tea", "#TEA", "#other", "alice", "bob", "carol", "*", "0", "+o", "-o", "+b",
         "+ik", "-k", "key", "msgid=1", "LATEST", "BEFORE", "PLAIN", "LS", "REQ", "END",
         ":", "", "\x01ACTION waves\x01", "\x02bold", "é" * 3, "\r", "\x00", "x" * 300,
         "#" + "é" * 240, "n" * 400]
commands_ = st.sampled_from(sorted(commands.COMMANDS) + ["FOO", "privmsg", "CAP"])
params = st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=12)), max_size=5)
raw = st.binary(max_size=80)


@st.composite
def irc_lines(draw):
    if draw(st.integers(0, 9)) == 0:
        return draw(raw)
    words = [w for w in draw(params) if " " not in w and not w.startswith(":")]
    trailing = draw(st.one_of(st.none(), st.sampled_from(WORDS), st.text(max_size=40)))
    text = " ".join([draw(commands_)] + words)
    if trailing is not None:
        text += " :" + trailing
    if draw(st.booleans()):
        text = "@" + draw(st.sampled_from(["time=x", "+typing=active", "a=" + "b" * 9000])) \
            + " " + text
    return text.encode("utf-8", "surrogatepass")


@FUZZ
@given(st.lists(irc_lines(), min_size=1, max_size=12))
def test_no_irc_input_breaks_anything(lines):
    chat = Chat(rate=1000.0, burst=10_000)
    irc = IrcChat(chat)
    alice = irc.client("alice", "#tea", caps=("echo-message",))
    bob = chat.line("bob", "#tea")
    for data in lines:
        if alice.transport.connected:
            alice.proto.dataReceived(data.replace(b"\n", b" ") + b"\r\n")
    out = alice.raw()
    assert b"error internal" not in out
    assert out == b"" or out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        body = line.split(b" ", 1)[1] if line.startswith(b"@") else line
        assert len(body) + 2 <= 512, line
    bob.raw()
    bob.send("still here")
    assert b"<bob> still here" in bob.raw()
