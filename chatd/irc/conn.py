"""One IRC client's state machine, whatever carries its lines.

``IrcConnection`` takes text lines in (``line_received``) and writes bytes
out through its sink's output queue (chatd.outbuf): the sink is a
``chatd.sink.SinkBase`` that owns the transport, the queue and the chatd
session.  Every chat action goes to the shared dispatcher as a request whose
``id`` is an ``Ask`` (the IRC command and its target), so its ack or error is
answered here with the numeric a classic IRC server would send.
"""

import time

from twisted.logger import Logger

from chatd import __version__
from chatd.errors import ChatError
from chatd.events import Ack, Error, Hello, Invite, Message, Notice
from chatd.irc import commands, isupport, replies
from chatd.irc import numerics as rpl
from chatd.irc.caps import Caps
from chatd.irc.message import MAX_LINE, MAX_TAGS, ParseError, line, parse
from chatd.irc.render import Authored, Formats, crlf, describe, mask, server_time
from chatd.irc.replies import Ask

# The longest parameter a reply echoes back (a nick or room is at most --max-nick or
# --max-room; anything longer is the client's mistake, shown clipped).
MAX_ECHO = 64
# User modes a client may set on itself (irssi sends MODE nick +i on connect): i
# (invisible) and w (wallops) are recorded and reported; chatd lists nobody to
# strangers anyway, and sends WALLOPS to everyone.
USER_MODES = "iw"


class IrcServer:
    """What every connection of one IRC listener shares."""

    def __init__(self, service, dispatcher, framer=crlf):
        self.service = service
        self.dispatcher = dispatcher
        self.name = service.server_name
        self.network = service.server_name  # NETWORK in 005 and the welcome
        self.created = time.strftime("%Y-%m-%d %H:%M:%S UTC",
                                     time.gmtime(service.clock.seconds()))
        self.formats = Formats(self.name, framer, self.account_of,
                               getattr(service, "metrics", None), self.away_of)

    def away_of(self, nick: str) -> str | None:
        holder = self.service.nicks.get(nick.lower())
        return holder.away if holder is not None else None

    def account_of(self, nick: str) -> str | None:
        holder = self.service.nicks.get(nick.lower())
        if holder is None or holder.account is None:
            return None
        return holder.nick


class IrcConnection:
    """Lines in, lines out, for one client; ``sink`` owns the transport and session."""

    log = Logger()

    def __init__(self, sink, server: IrcServer):
        self.sink = sink
        self.server = server
        self.service = server.service
        self.dispatcher = server.dispatcher
        self.frame = server.formats.framer
        self.caps = Caps()
        self.wanted_nick = None
        self.user = None  # (username, realname) from USER
        self.password = None  # from PASS
        self.registered = False
        self.sasl = None  # None, or the PLAIN payload being received
        self.held = []  # output before the welcome
        self.held_bytes = 0
        # Where a broadcast goes: held until the welcome, then the queue's own write.
        self.out_write = self.hold
        self.early_notices = []  # notices before the welcome: the MOTD
        self.history = {}  # room key -> history events waiting for their answer
        self.joins = 0  # JOINs asked and not yet answered
        self.after_join = []  # what the service sent this session meanwhile
        self.batches = 0
        self.user_modes = set()  # of USER_MODES: the client's to set, nobody else's business
        sink.wire_format = server.formats.get(frozenset())

    # -- state others may read ------------------------------------------------------
    @property
    def session(self):
        return self.sink.session

    @property
    def me(self) -> str:
        session = self.session
        return session.nick if session is not None and session.nick else "*"

    @property
    def realname(self) -> str:
        return self.user[1] if self.user else self.me

    # -- output ----------------------------------------------------------------------
    def write(self, payload: bytes) -> None:
        """The sink's ``write``, on the fan-out path: a broadcast's payload, shared
        with other members (an ``Authored`` payload is bytes too, never copied)."""
        cls = payload.__class__
        if cls is bytes:
            self.out_write(payload)
        elif cls is Authored:
            session = self.sink.session
            if session is None or payload.author != session.key:
                self.out_write(payload)
            # else: the sender's own message, and it did not ask for echoes
        else:
            self.finish(payload.event)

    def write_reply(self, payload: bytes) -> None:
        """The sink's ``write_reply``: for this session alone, counted at once.

        While a JOIN is answered, what the room said meanwhile waits for the
        JOIN line, the names and the scrollback, as an IRC client expects."""
        cls = type(payload)
        if cls is not bytes:
            if cls is not Authored:
                self.finish(payload.event)
                return
            session = self.session
            if session is not None and payload.author == session.key:
                return
        if self.joins:
            self.after_join.append(payload)
        elif self.registered:
            self.sink.out.write_counted(payload)
        else:
            self.hold(payload)

    def hold(self, data: bytes) -> None:
        """Keep output for after the welcome, within the send-queue cap (a client
        that logs in with SASL and never ends registration could be sent a lot)."""
        self.held.append(data)
        self.held_bytes += len(data)
        session = self.session
        if self.held_bytes > self.service.limits.send_queue and session is not None:
            self.held = []
            self.service.drop(session, "send queue exceeded")

    def send(self, *lines) -> None:
        if lines:
            data = self.frame(lines)
            if self.registered:
                self.sink.out.write_counted(data)
            else:
                self.hold(data)

    def send_now(self, *lines) -> None:
        """Before the welcome too (CAP, SASL, registration errors)."""
        self.sink.out.write_counted(self.frame(lines))

    def numeric(self, code: str, *params, trail: bool = True) -> str:
        """A numeric reply; a parameter echoing the client's input is clipped so
        that the line keeps within 512 bytes."""
        if params:
            *middle, last = params
            middle = [p if len(p) <= MAX_ECHO else p[:MAX_ECHO] for p in map(str, middle)]
            params = (*middle, last)
        text = line(code, self.me, *params, source=self.server.name, trail=trail)
        data = text.encode("utf-8")
        if len(data) > MAX_LINE - 2:
            text = data[:MAX_LINE - 2].decode("utf-8", "ignore")
        return text

    def reply(self, code: str, *params, trail: bool = True) -> None:
        self.send(self.numeric(code, *params, trail=trail))

    def notice(self, text: str) -> None:
        self.send(line("NOTICE", self.me, text, source=self.server.name, trail=True))

    def ping_line(self) -> bytes:
        return self.frame([line("PING", self.server.name)])

    def error_line(self, reason: str) -> bytes:
        return self.frame([line("ERROR", f"Closing link: {reason}", trail=True)])

    # -- input -----------------------------------------------------------------------
    def line_received(self, text: str) -> None:
        session = self.session
        if session is None or not session.attached:
            return
        body = text
        if text.startswith("@"):
            tags, _, body = text.partition(" ")
            if len(tags.encode("utf-8")) > MAX_TAGS:
                return self.too_long()
        if len(body.encode("utf-8")) > MAX_LINE - 2:
            return self.too_long()
        try:
            msg = parse(text)
        except ParseError:
            return self.refuse(ChatError("bad_request", "that is not an IRC line"))
        if msg is None:
            self.service.touch(session)  # a blank line: proof of life only
            return
        try:
            commands.handle(self, msg)
        except Exception:
            # A bug here must not take the connection with it: say so, log it.
            self.log.failure("IRC {command} from {session} failed", command=msg.command,
                             session=session)
            if session.attached:
                self.notice("error internal: the server failed; this is a bug")

    def too_long(self) -> None:
        try:
            self.service.admit(self.session)
        except ChatError:
            return
        self.send_now(self.numeric(rpl.ERR_INPUTTOOLONG,
                                   f"Input line was too long (at most {MAX_LINE} bytes)"))

    def admit(self) -> bool:
        """Count a command answered here (flood control, proof of life)."""
        try:
            self.service.admit(self.session)
        except ChatError as e:
            self.on_error(Error(e.code, e.message))
            return False
        return True

    def ask(self, ask: Ask, req: dict) -> None:
        """One chatd request for the line being handled (already admitted: one IRC
        line is one request for flood control, however many targets it names)."""
        req["id"] = ask
        if ask.command == "JOIN":
            self.joins += 1
        self.dispatcher.handle(self.session, req, admitted=True)

    def answered(self, ask: Ask) -> None:
        """A request's answer is out: after a JOIN's, what waited for it."""
        if ask is not None and ask.command == "JOIN" and self.joins:
            self.joins -= 1
            if not self.joins:
                waiting, self.after_join = self.after_join, []
                for data in waiting:
                    self.write_reply(data)

    def refuse(self, error: ChatError) -> None:
        self.dispatcher.refuse(self.session, error)

    # -- what the service sends this session alone ------------------------------------
    def finish(self, event) -> None:
        kind = type(event)
        if kind is Ack:
            replies.on_ack(self, event)
        elif kind is Error:
            self.on_error(event)
        elif kind is Message:  # history
            self.history.setdefault(event.room.lower(), []).append(event)
        elif kind is Notice:
            if not self.registered:
                self.early_notices.append(event.text)
            elif self.joins:  # "history is unavailable": after the JOIN it is about
                self.after_join.append(self.frame(
                    [line("NOTICE", self.me, event.text, source=self.server.name, trail=True)]))
            else:
                self.notice(event.text)
        elif kind is Invite:
            self.send(line("INVITE", self.me, event.room, source=mask(event.by)))
        elif kind is Hello:
            pass  # the welcome numerics say it, once the client has registered
        else:
            self.notice(describe(event))

    def on_error(self, event: Error) -> None:
        replies.on_error(self, event)

    # -- registration ---------------------------------------------------------------
    def try_register(self) -> None:
        """NICK and USER seen and CAP negotiation over: ask chatd for the nick."""
        if self.registered or self.caps.negotiating or not self.user or not self.wanted_nick:
            return
        session = self.session
        if session.account is not None and session.nick == self.wanted_nick:
            self.welcome()
        elif self.password is not None and session.account is None:
            password, self.password = self.password, None
            self.ask(Ask("PASS", self.wanted_nick),
                     {"type": "login", "nick": self.wanted_nick, "password": password})
        else:
            self.ask(Ask("NICK", self.wanted_nick), {"type": "nick", "nick": self.wanted_nick})

    def welcome(self) -> None:
        if self.registered:
            return
        self.registered = True
        self.out_write = self.sink.out.write
        srv = self.server
        me = self.me
        version = f"chatd-{__version__}"
        out = [
            self.numeric(rpl.RPL_WELCOME, f"Welcome to the {srv.network} IRC network {mask(me)}"),
            self.numeric(rpl.RPL_YOURHOST, f"Your host is {srv.name}, running version {version}"),
            self.numeric(rpl.RPL_CREATED, f"This server was created {srv.created}"),
            self.numeric(rpl.RPL_MYINFO, srv.name, version, USER_MODES, "biko", "bko", trail=False),
        ]
        out.extend(self.isupport())
        self.send(*out)
        self.lusers()
        self.motd(self.early_notices)
        held, self.held = self.held, []
        self.held_bytes = 0
        for data in held:
            self.sink.out.write_counted(data)

    def isupport(self) -> list:
        return [self.numeric(rpl.RPL_ISUPPORT, *group, "are supported by this server")
                for group in isupport.lines(self.service, self.server.network)]

    def version(self) -> None:
        """VERSION: 351, then the 005 lines again (as the modern client protocol says)."""
        self.reply(rpl.RPL_VERSION, f"chatd-{__version__}", self.server.name,
                   "chatd: IRC, line, JSON and WebSocket users in the same rooms")
        self.send(*self.isupport())

    def lusers(self) -> None:
        service = self.service
        users = len(service.sessions)
        self.reply(rpl.RPL_LUSERCLIENT, f"There are {users} users and 0 invisible on 1 servers")
        # Server operators online: those of the --operators accounts logged in now.
        online = sum(1 for key in service.operators
                     if service.accounts.session_of(key) is not None)
        self.reply(rpl.RPL_LUSEROP, str(online), "operator(s) online")
        self.reply(rpl.RPL_LUSERCHANNELS, str(len(service.rooms)), "channels formed")
        self.reply(rpl.RPL_LUSERME, f"I have {users} clients and 0 servers")

    def motd(self, lines=None) -> None:
        lines = list(self.service.motd) if lines is None else lines
        if not lines:
            self.reply(rpl.ERR_NOMOTD, "MOTD File is missing")
            return
        self.reply(rpl.RPL_MOTDSTART, f"- {self.server.name} Message of the day - ")
        for text in lines:
            self.reply(rpl.RPL_MOTD, f"- {text}")
        self.reply(rpl.RPL_ENDOFMOTD, "End of /MOTD command.")

    # -- user modes -----------------------------------------------------------------
    def change_user_modes(self, spec: str) -> tuple:
        """Apply ``+i-w``-style changes of the modes chatd has; returns the changes
        made (``+i``, or "" for none) and whether ``spec`` named a mode it has not.
        ``o`` is ignored, as servers ignore a user making themself an operator."""
        sign, unknown = "+", False
        applied = []
        for letter in spec:
            if letter in "+-":
                sign = letter
            elif letter in USER_MODES:
                if (sign == "+") != (letter in self.user_modes):
                    (self.user_modes.add if sign == "+" else self.user_modes.discard)(letter)
                    applied.append((sign, letter))
            elif letter != "o":
                unknown = True
        changed, last = "", None
        for sign, letter in applied:
            changed += letter if sign == last else sign + letter
            last = sign
        return changed, unknown

    # -- capabilities ---------------------------------------------------------------
    def caps_changed(self) -> None:
        """A CAP REQ was acknowledged: this session's variant may have changed."""
        fmt = self.server.formats.get(self.caps.rendering())
        if fmt is not self.sink.wire_format:
            self.sink.wire_format = fmt
            self.service.set_format(self.session, fmt)

    # -- history --------------------------------------------------------------------
    def flush_history(self, room: str, always_batch: bool = False) -> None:
        """The history events received for ``room``: a chathistory batch when the
        client has batch, plain lines (with server-time when it has that) otherwise.
        A CHATHISTORY answer is a batch even when it is empty."""
        events = self.history.pop(room.lower(), None) or []
        if not events and not (always_batch and self.caps.has("batch")):
            return
        fmt = self.sink.wire_format
        batch = None
        out = []
        if self.caps.has("batch"):
            self.batches += 1
            batch = f"h{self.batches}"
            out.append(line("BATCH", f"+{batch}", "chathistory", room, source=self.server.name))
        for e in events:
            tags = {}
            if batch:
                tags["batch"] = batch
            if fmt.time:
                tags["time"] = server_time(e.ts)
            if fmt.msgid:
                tags["msgid"] = str(e.mid)
            out.extend(fmt.text_lines(e.nick, "PRIVMSG", e.room, e.text, tags or None,
                                      e.kind == "action"))
        if batch:
            out.append(line("BATCH", f"-{batch}", source=self.server.name))
        self.send(*out)
