"""A small chatd bot built on chatd.client.

    python examples/bot.py ws://127.0.0.1:8080/ws '#lobby' '#ops' --nick helper
    python examples/bot.py wss://chat.example.org/ws '#lobby' --ca-file my-ca.pem
    CHATD_PASSWORD=... python examples/bot.py wss://chat.example.org/ws '#lobby' --nick helper

It answers ``!ping`` with ``pong``, ``!who`` with the room's members and
``!seen`` with how many messages it has seen, in the room they were said in.
Kill the daemon under it and start it again: the bot reconnects (1, 2, 4 ...
30 s apart), takes its nick back, rejoins its rooms, and reads what was said
while it was away (those arrive with ``"history": true``) without answering
any message twice.  With a password (``--password-file FILE`` or
``$CHATD_PASSWORD``) it logs in as its registered nick on every connect, and
reads the private messages left for it while it was away.
"""

import argparse
import os
import sys

from twisted.internet import defer, task
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from chatd.client import ChatClient, LoginError, RequestError

log = Logger(namespace="bot")


class Bot:
    def __init__(self, client: ChatClient):
        self.client = client
        self.seen = 0
        client.on_event(self.on_message, "message")
        client.on_event(self.on_connection, "connected", "disconnected")
        client.on_event(self.on_private, "private")

    def on_connection(self, event):
        log.info("{type}: {detail}", type=event["type"],
                 detail=event.get("rooms") or event.get("reason"))

    def on_private(self, event):
        if event["from"] != self.client.nick:
            log.info("{when} private message from {sender}: {text}", sender=event["from"],
                     text=event["text"], when="offline" if event.get("offline") else "a")

    def on_message(self, event):
        self.seen += 1
        if event["from"] == self.client.nick or event.get("history"):
            return  # our own words, and old commands nobody is waiting for
        command = event["text"].strip().split()[0] if event["text"].strip() else ""
        room = event["room"]
        if command == "!ping":
            self.reply(self.client.say(room, "pong"))
        elif command == "!seen":
            self.reply(self.client.say(room, f"{self.seen} messages so far"))
        elif command == "!who":
            d = self.client.who(room)
            d.addCallback(lambda ack: self.client.say(room, ", ".join(ack["nicks"])))
            self.reply(d)

    def reply(self, d: defer.Deferred):
        # A refused reply (rate limit, say) is logged, not fatal; a dropped
        # connection just loses this reply: the client reconnects by itself.
        d.addErrback(lambda f: log.warn("reply failed: {error}", error=f.getErrorMessage()))


@defer.inlineCallbacks
def main(reactor, args):
    password = os.environ.get("CHATD_PASSWORD") or None
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
    client = ChatClient(args.url, args.nick, reactor=reactor, ca_file=args.ca_file,
                        password=password)
    Bot(client)
    client.start()
    reactor.addSystemEventTrigger("before", "shutdown", client.stop, "bot going home")
    # Fail fast on a bad first connection (wrong URL, certificate, password), then
    # keep going; a login refused later (another connection took the account) ends it.
    try:
        yield client.ready(fail_after=1)
    except LoginError as e:
        log.error("cannot log in as {nick}: {error}", nick=args.nick, error=e)
        raise SystemExit(1)
    for room in args.rooms:
        try:
            yield client.join(room)
        except RequestError as e:
            log.error("cannot join {room}: {error}", room=room, error=e)
            raise SystemExit(1)
    log.info("{nick} is in {rooms}", nick=client.nick, rooms=", ".join(args.rooms))
    yield defer.Deferred()  # run until interrupted


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("rooms", nargs="+")
    p.add_argument("--nick", default="helper")
    p.add_argument("--ca-file")
    p.add_argument("--password-file", help="its first line is the nick's password "
                   "(default $CHATD_PASSWORD)")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    task.react(main, [p.parse_args()])
