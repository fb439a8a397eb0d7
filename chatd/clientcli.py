"""``chatd-cli``: talk to a chatd from shell scripts and an operator's terminal.

    chatd-cli send '#ops' 'deploy finished'          # one message, exit 0 once stored
    tail -f app.log | chatd-cli send '#ops'          # every stdin line, paced to the rate limit
    chatd-cli follow '#ops' '#alerts'                # print messages as they come (Ctrl-C ends)
    chatd-cli who '#ops'; chatd-cli rooms; chatd-cli msg alice 'ping me'
    chatd-cli -n deploybot --password-file ~/.chatd-pass send '#ops' done   # a registered nick

A registered nick logs in with the password from ``--password-file`` (its
first line) or ``$CHATD_PASSWORD``; there is deliberately no option taking the
password itself, since a command line shows in ``ps``.

Exit codes: 0 done; 1 the server refused a request (its error code is on
stderr); 2 bad usage; 3 could not connect, timed out or lost the connection;
4 the server's TLS certificate was refused (untrusted CA or wrong host name).
"""

import argparse
import json
import os
import sys

from twisted.internet import defer, error, stdio, task
from twisted.protocols.basic import LineReceiver

from chatd.client import DEFAULT_URL, ChatClient, LoginError, RequestError, TLSError
from chatd.text import text_of

OK, REFUSED, USAGE, CONNECTION, TLS = 0, 1, 2, 3, 4
FLOOD_PAUSE = 1.0


class Failed(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="chatd-cli", description="Send to and follow chatd rooms from the shell.",
        epilog="Exit codes: 0 ok, 1 refused by the server, 2 usage, 3 connection "
               "failed or timed out, 4 TLS certificate refused.")
    p.add_argument("-u", "--url", default=os.environ.get("CHATD_URL", DEFAULT_URL),
                   help="ws://, wss://, tcp:// (line port) or tls:// URL "
                        "(default $CHATD_URL or %(default)s)")
    p.add_argument("-n", "--nick", default=os.environ.get("CHATD_NICK", f"cli-{os.getpid()}"),
                   help="nick to use, or to log in as with a password "
                        "(default $CHATD_NICK or cli-PID)")
    p.add_argument("--password-file", metavar="FILE",
                   help="log in as the (registered) nick with the password on this file's "
                        "first line (default: $CHATD_PASSWORD, if set)")
    p.add_argument("--format", choices=("json", "protobuf"),
                   default=os.environ.get("CHATD_FORMAT", "json"),
                   help="the wire format: protobuf needs a ws:// or wss:// URL "
                        "(default $CHATD_FORMAT or %(default)s)")
    p.add_argument("--ca-file", default=os.environ.get("CHATD_CA_FILE"),
                   help="trust only this CA bundle (PEM) for TLS instead of the system's")
    p.add_argument("-t", "--timeout", type=float, default=10.0,
                   help="seconds to wait for the server (default %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("send", help="send a message to a room (each stdin line if no text)")
    s.add_argument("room")
    s.add_argument("text", nargs="*", help="the message; '-' or nothing reads stdin lines")
    s.add_argument("--action", action="store_true", help="send as /me")
    f = sub.add_parser("follow", help="print a room's messages as they come, until interrupted")
    f.add_argument("rooms", nargs="+", metavar="room")
    f.add_argument("--json", action="store_true", help="print every event as one JSON line")
    w = sub.add_parser("who", help="list who is in a room")
    w.add_argument("room")
    sub.add_parser("rooms", help="list rooms")
    m = sub.add_parser("msg", help="send a private message")
    m.add_argument("to")
    m.add_argument("text", nargs="+")
    return p.parse_args(argv)


def read_password(args) -> str | None:
    """The password from --password-file or $CHATD_PASSWORD, or None for a guest nick."""
    if args.password_file is None:
        return os.environ.get("CHATD_PASSWORD") or None
    try:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        raise Failed(USAGE, f"cannot read the password file: {e}")
    if not password:
        raise Failed(USAGE, f"{args.password_file}: the first line (the password) is empty")
    return password


def render(event: dict) -> str | None:
    """A readable line for an event, or None for events not worth a line."""
    kind = event.get("type")
    if kind == "disconnected":
        return f"* disconnected ({event['reason']}); reconnecting"
    if kind == "connected":
        return "* connected"
    return text_of(event)


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err(line: str) -> None:
    sys.stderr.write(f"chatd-cli: {line}\n")
    sys.stderr.flush()


@defer.inlineCallbacks
def request(reactor, call, timeout):
    """One request, retried after a pause while the server says we flood."""
    while True:
        try:
            result = yield call().addTimeout(timeout, reactor)
            return result
        except RequestError as e:
            if e.code != "flood":
                raise
            yield task.deferLater(reactor, FLOOD_PAUSE)


class _StdinLines(LineReceiver):
    delimiter = b"\n"

    def __init__(self):
        self.queue = defer.DeferredQueue()

    def lineReceived(self, line):
        self.queue.put(line.rstrip(b"\r").decode("utf-8", "replace"))

    def connectionLost(self, reason):
        self.queue.put(None)


@defer.inlineCallbacks
def send(reactor, client, args):
    yield request(reactor, lambda: client.join(args.room), args.timeout)
    say = client.action if args.action else client.say
    if args.text and args.text != ["-"]:
        yield request(reactor, lambda: say(args.room, " ".join(args.text)), args.timeout)
        return
    # stdin may be a pipe that never ends (tail -f): read it as it comes.
    lines = _StdinLines()
    stdio.StandardIO(lines, reactor=reactor)
    while (text := (yield lines.queue.get())) is not None:
        if text.strip():
            yield request(reactor, lambda t=text: say(args.room, t), args.timeout)


@defer.inlineCallbacks
def follow(reactor, client, args):
    def show(event):
        if args.json:
            out(json.dumps(event, ensure_ascii=False))
        elif (line := render(event)) is not None:
            out(line)
    for room in args.rooms:
        yield request(reactor, lambda r=room: client.join(r), args.timeout)
    client.on_event(show)
    err(f"following {', '.join(args.rooms)} as {client.nick}; Ctrl-C to stop")
    yield defer.Deferred()  # until interrupted; the client reconnects by itself


@defer.inlineCallbacks
def who(reactor, client, args):
    ack = yield request(reactor, lambda: client.who(args.room), args.timeout)
    for nick in ack["nicks"]:
        out(nick)
    if ack.get("more"):
        err(f"{ack['members']} present; only the first {len(ack['nicks'])} are listed")


@defer.inlineCallbacks
def rooms(reactor, client, args):
    ack = yield request(reactor, client.list_rooms, args.timeout)
    for r in ack["rooms"]:
        out(f"{r['room']}\t{r['members']}")


@defer.inlineCallbacks
def msg(reactor, client, args):
    yield request(reactor, lambda: client.private(args.to, " ".join(args.text)), args.timeout)


COMMANDS = {"send": send, "follow": follow, "who": who, "rooms": rooms, "msg": msg}


def classify(failure) -> Failed:
    """The exit code and message for what went wrong."""
    e = failure.value
    if isinstance(e, Failed):
        return e
    if isinstance(e, TLSError):
        return Failed(TLS, f"TLS: {e}")
    if isinstance(e, LoginError):
        return Failed(REFUSED, f"login refused: {e.code}: {e.message}")
    if isinstance(e, RequestError):
        hint = ("; log in with --password-file or $CHATD_PASSWORD"
                if e.code == "nick_registered" else "")
        return Failed(REFUSED, f"refused: {e.code}: {e.message}{hint}")
    if isinstance(e, (defer.TimeoutError, defer.CancelledError)):
        return Failed(CONNECTION, "timed out waiting for the server")
    if isinstance(e, (error.ConnectError, error.ConnectionLost, error.ConnectionDone,
                      error.DNSLookupError, OSError)):
        return Failed(CONNECTION, f"connection failed: {failure.getErrorMessage()}")
    return Failed(CONNECTION, f"failed: {failure.getErrorMessage()}")


@defer.inlineCallbacks
def run(reactor, args):
    password = read_password(args)
    try:
        client = ChatClient(args.url, args.nick, reactor=reactor, ca_file=args.ca_file,
                            password=password, format=args.format)
    except (ValueError, OSError) as e:
        raise Failed(USAGE, str(e))
    client.start()
    # Leave politely on Ctrl-C / SIGTERM too (follow ends that way).
    reactor.addSystemEventTrigger("before", "shutdown", client.stop)
    try:
        yield client.ready(fail_after=1).addTimeout(args.timeout, reactor)
        yield COMMANDS[args.command](reactor, client, args)
    finally:
        if client.connected:
            yield client.stop()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def go(reactor):
        d = run(reactor, args)

        def failed(f):
            problem = classify(f)
            err(str(problem))
            raise SystemExit(problem.code)
        return d.addErrback(failed)
    task.react(go)


if __name__ == "__main__":
    main()
