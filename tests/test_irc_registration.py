"""IRC registration, PING/PONG, QUIT, heartbeats, limits: IrcProtocol on a StringTransport."""

import pytest
from irchelp import IrcChat

from chatd.errors import ChatError
from chatd.protocols.irc import irc_refusal


@pytest.fixture
def irc(chat):
    return IrcChat(chat)


def codes(lines):
    return [line.split()[1] for line in lines]


def test_registration_welcome_burst(irc):
    client = irc.client()
    assert client.lines() == []  # nothing until the client says who it is
    client.send("NICK alice")
    assert client.lines() == []
    lines = client.register("alice")
    assert codes(lines) == ["001", "002", "003", "004", "005", "005",
                            "251", "252", "254", "255", "422"]
    assert lines[0] == ":chatd 001 alice :Welcome to the chatd IRC network alice!alice@chatd"
    isupport = " ".join(lines[4:6])
    assert "NICKLEN=24" in isupport and "CHANNELLEN=50" in isupport
    assert client.session.nick == "alice"


def test_server_name_is_name_option(make_chat):
    chat = make_chat()
    chat.service.server_name = "irc.example.org"
    client = IrcChat(chat).client()
    lines = client.register("alice")
    assert all(line.startswith(":irc.example.org ") for line in lines)


def test_motd_is_shown_as_375_372_376(chat, irc):
    chat.service.motd = ("Be nice.", "No spam.")
    lines = irc.client().register("alice")
    assert lines[-4:] == [":chatd 375 alice :- chatd Message of the day - ",
                          ":chatd 372 alice :- Be nice.", ":chatd 372 alice :- No spam.",
                          ":chatd 376 alice :End of /MOTD command."]


def test_lf_alone_is_accepted_and_output_is_crlf(irc):
    client = irc.client()
    client.send("NICK alice", "USER a 0 * :A", eol=b"\n")
    assert client.raw().startswith(b":chatd 001 alice :Welcome")


def test_commands_before_registration_get_451(irc):
    client = irc.client()
    client.send("JOIN #tea")
    assert client.lines() == [":chatd 451 * :You have not registered"]


def test_nick_errors_432_433_431(irc):
    irc.client("alice")
    client = irc.client()
    client.send("NICK", "NICK 9lives", "USER x 0 * :X")
    assert client.lines() == [":chatd 431 * :No nickname given",
                              ":chatd 432 * 9lives :a nick is 1-24 letters, digits, '_' or '-', "
                              "starting with a letter"]
    client.send("NICK Alice")
    assert client.lines() == [":chatd 433 * Alice :Alice is already taken"]
    client.send("NICK bob")
    assert codes(client.lines())[0] == "001"


def test_user_errors_461_462(irc):
    client = irc.client()
    client.send("USER onlyone")
    assert client.lines() == [":chatd 461 * USER :Not enough parameters"]
    client.register("alice")
    client.send("USER a 0 * :again", "PASS x")
    assert client.lines() == [":chatd 462 alice :You may not reregister",
                              ":chatd 462 alice :You may not reregister"]


def test_unknown_command_421(irc):
    client = irc.client("alice")
    client.send("FROBNICATE now")
    assert client.lines() == [":chatd 421 alice FROBNICATE :Unknown command"]


def test_client_ping_gets_pong_even_before_registration(irc):
    client = irc.client()
    client.send("PING :token123")
    assert client.lines() == [":chatd PONG chatd :token123"]
    client.send("PING")
    assert client.lines() == [":chatd 409 * :No origin specified"]


def test_server_ping_and_pong_is_proof_of_life(make_chat):
    chat = make_chat(ping_interval=30, ping_timeout=60)
    chat.service.startService()
    client = IrcChat(chat).client("alice")
    chat.clock.advance(31)
    assert client.lines() == ["PING chatd"]
    client.send("PONG chatd")
    chat.clock.advance(40)  # 71 s after the last line it sent without its PONG
    assert client.transport.connected
    chat.clock.advance(61)
    assert client.lines()[-1] == "ERROR :Closing link: ping timeout"
    chat.service.stopService()


def test_quit_sends_error_before_close_and_others_see_quit(irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea")
    alice.raw()
    bob.send("QUIT :gone fishing")
    assert bob.lines() == ["ERROR :Closing link: gone fishing"]
    assert not bob.transport.connected
    assert alice.lines() == [":bob!bob@chatd QUIT :gone fishing"]


def test_line_longer_than_512_bytes_is_refused_with_417(irc):
    alice = irc.client("alice", "#tea")
    bob = irc.client("bob", "#tea")
    alice.raw()
    bob.send("PRIVMSG #tea :" + "x" * 600)
    assert bob.lines() == [":chatd 417 bob :Input line was too long (at most 512 bytes)"]
    assert alice.lines() == []
    bob.send("PRIVMSG #tea :" + "y" * 496)  # exactly 510 bytes: allowed
    relayed = alice.lines()  # with bob's source in front it needs two lines: split, not cut
    assert all(len(line.encode()) + 2 <= 512 for line in relayed)
    assert "".join(line.split(" :", 1)[1] for line in relayed) == "y" * 496
    # Past what the receiver buffers at all: refused too, and the next line works.
    bob.send("PRIVMSG #tea :" + "z" * 20000 + "\r\nPRIVMSG #tea :after")
    assert codes(bob.lines()) == ["417"]
    assert alice.lines() == [":bob!bob@chatd PRIVMSG #tea :after"]


def test_flood_is_the_services(make_chat):
    chat = make_chat(rate=1, burst=3, flood_strikes=3, reconnect_burst=0)
    alice = IrcChat(chat).client("alice", "#tea")
    alice.raw()
    for i in range(7):
        alice.send(f"PRIVMSG #tea :spam {i}")
    lines = alice.lines()
    assert ":chatd NOTICE alice :error flood: too many requests; slow down" in lines
    assert lines[-1] == "ERROR :Closing link: excess flood"
    assert not alice.transport.connected


def test_admission_refusal_reads_as_an_irc_error():
    assert irc_refusal(ChatError("too_many_from_ip", "too many connections")) == \
        b"ERROR :Closing link: too many connections\r\n"


def test_registration_timeout_is_the_services(make_chat):
    chat = make_chat(register_timeout=10)
    chat.service.startService()
    client = IrcChat(chat).client()
    chat.clock.advance(11)
    assert client.lines() == ["ERROR :Closing link: registration timeout"]
    chat.service.stopService()


def test_slow_reader_is_dropped_by_the_send_queue_cap(make_chat):
    chat = make_chat(send_queue=2048)
    alice = IrcChat(chat).client("alice", "#tea")
    bob = IrcChat(chat).client("bob", "#tea")
    alice.proto.out.pauseProducing()  # alice stops reading
    for i in range(40):
        bob.send(f"PRIVMSG #tea :{'x' * 100} {i}")
        chat.clock.advance(1)
    assert alice.session is None  # dropped: "send queue exceeded"
    assert bob.transport.connected


def test_one_line_is_one_request_for_flood_control(make_chat):
    chat = make_chat(rate=0.1, burst=3, reconnect_burst=0)
    client = IrcChat(chat).client()
    client.register("alice")  # NICK and USER: two of the three
    client.send("JOIN #a,#b,#c,#d,#e")  # five rooms, one line
    assert [line.split()[1] for line in client.lines()].count("JOIN") == 5
    client.send("PRIVMSG #a,#b :both")
    assert client.lines() == [":chatd NOTICE alice :error flood: too many requests; slow down"]


def test_tagmsg_is_accepted_silently(irc):
    alice = irc.client("alice", "#tea", caps=("message-tags",))
    alice.send("@+typing=active TAGMSG #tea")
    assert alice.lines() == []


def test_a_bug_in_a_command_is_logged_and_the_connection_survives(irc, monkeypatch):
    from chatd.irc import commands

    def broken(conn, params):
        raise RuntimeError("boom")
    monkeypatch.setitem(commands.COMMANDS, "LUSERS", broken)
    alice = irc.client("alice")
    alice.send("LUSERS")
    assert alice.lines() == [":chatd NOTICE alice :error internal: the server failed; "
                             "this is a bug"]
    alice.send("PING :still")
    assert alice.lines() == [":chatd PONG chatd :still"]


def test_lusers_and_motd_commands(chat, irc):
    chat.service.motd = ("Hello.",)
    alice = irc.client("alice")
    chat.line("bob")
    alice.send("LUSERS", "MOTD")
    assert alice.lines() == [
        ":chatd 251 alice :There are 2 users and 0 invisible on 1 servers",
        ":chatd 252 alice 0 :operator(s) online", ":chatd 254 alice 0 :channels formed",
        ":chatd 255 alice :I have 2 clients and 0 servers",
        ":chatd 375 alice :- chatd Message of the day - ", ":chatd 372 alice :- Hello.",
        ":chatd 376 alice :End of /MOTD command."]


def test_kill_and_wallops_are_for_server_operators_481(chat, irc):
    chat.service.reconfigure(operators=["root"])
    root = chat.line("root")
    root.send("/register correct horse battery", "/quit")
    alice = irc.client("alice")
    alice.send("KILL root :bye", "WALLOPS :hello")
    lines = alice.lines()
    assert len(lines) == 2 and all(line.startswith(":chatd 481 alice :") for line in lines)
    op = irc.client()
    op.send("PASS :correct horse battery", "NICK root", "USER r 0 * :R")
    assert op.lines()[1].startswith(":chatd 001 root ")
    op.send("LUSERS")
    assert ":chatd 252 root 1 :operator(s) online" in op.lines()
    op.send("WALLOPS :maintenance at noon", "KILL alice :enough")
    assert alice.lines() == [":chatd NOTICE alice :[server notice from root] maintenance at noon",
                             "ERROR :Closing link: killed by root: enough"]


def test_irc_connections_count_against_the_same_limits_as_line_users(make_chat):
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from chatd.admission import Admission, AdmissionFactory, line_refusal
    from chatd.protocols.irc import IrcFactory
    from chatd.protocols.line import LineFactory

    chat = make_chat(max_per_ip=2)
    lim = chat.service.limits
    admission = Admission(lim.max_connections, lim.max_per_ip, 64)
    line = AdmissionFactory(LineFactory(chat.service, chat.dispatcher), admission,
                            line_refusal, chat.clock)
    irc = AdmissionFactory(IrcFactory(chat.service, chat.dispatcher), admission,
                           irc_refusal, chat.clock)

    def connect(factory):
        proto = factory.buildProtocol(IPv4Address("TCP", "10.0.0.7", 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 40000))
        proto.makeConnection(transport)
        return proto, transport
    connect(line)
    connect(irc)
    _, late = connect(irc)
    assert late.value() == b"ERROR :Closing link: too many connections from your address\r\n"
    assert late.disconnecting
    assert admission.connections == 2


def test_replies_echoing_long_input_keep_within_512_bytes(irc):
    alice = irc.client("alice")
    alice.send("JOIN #" + "a" * 490, "PRIVMSG " + "b" * 490 + " :x")
    lines = alice.lines()
    assert [line.split()[1] for line in lines] == ["403", "401"]
    assert all(len(line.encode()) + 2 <= 512 for line in lines)
    assert lines[1].startswith(":chatd 401 alice " + "b" * 64 + " :")
