"""A small chatd bot built on chatd.client.

    python examples/bot.py ws://127.0.0.1:8080/ws '#lobby' '#ops' --nick helper
    python examples/bot.py wss://chat.example.org/ws '#lobby' --ca-file my-ca.pem

It answers ``!ping`` with ``pong``, ``!who`` with the room's members and
``!seen`` with how many messages it has seen, in the room they were said in.
Kill the daemon under it and start it again: the bot reconnects (1, 2, 4 ...
30 s apart), takes its nick back, rejoins its rooms, and reads what was said
while it was away (those arrive with ``"history": true``) without answering
any message twice.
"""

import argparse
import sys

from twisted.internet import defer, task
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from chatd.client import ChatClient, RequestError

log = Logger(namespace="bot")


class Bot:
    def __init__(self, client: ChatClient):
        self.client = client
        self.seen = 0
        client.on_event(self.on_message, "message")
        client.on_event(self.on_connection, "connected", "disconnected")

    def on_connection(self, event):
        log.info("{type}: {detail}", type=event["type"],
                 detail=event.get("rooms") or event.get("reason"))

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
    client = ChatClient(args.url, args.nick, reactor=reactor, ca_file=args.ca_file)
    Bot(client)
    client.start()
    reactor.addSystemEventTrigger("before", "shutdown", client.stop, "bot going home")
    # Fail fast on a bad first connection (wrong URL, certificate), then keep going.
    yield client.ready(fail_after=1)
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
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    task.react(main, [p.parse_args()])
