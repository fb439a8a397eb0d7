"""Small blocking clients for driving a real chatd: raw TCP lines and WebSocket.

Every read has a deadline; ``expect`` reads until a wanted line or event shows
up and keeps what it skipped, so a failing assertion shows what did arrive.
"""

import json
import socket
import struct
import time

import websocket

from chatd.pbcodec import decode_event, encode_request

DEFAULT_TIMEOUT = 5.0


class Closed(Exception):
    """The server closed the connection."""


def subset(event, want: dict) -> bool:
    return isinstance(event, dict) and all(event.get(k) == v for k, v in want.items())


def _tail(items, n=8) -> str:
    more = f"{len(items) - n} more, then " if len(items) > n else ""
    return f"[{more}{', '.join(map(repr, items[-n:]))}]"


def _matcher(want):
    if callable(want):
        return want
    if isinstance(want, dict):
        return lambda item: subset(item, want)
    return lambda item: isinstance(item, str) and want in item


class _Expecting:
    """``expect``: wait for a line or event, keeping what arrived meanwhile.

    Items read while waiting for something else stay in ``backlog`` and are
    searched first by the next ``expect``, so a test can wait for two things in
    either order.
    """

    timeout = DEFAULT_TIMEOUT

    def expect(self, want, timeout: float | None = None):
        """Return the first unconsumed item matching ``want``.

        ``want`` is a substring (text lines), a dict of fields (JSON events) or a
        predicate.
        """
        match = _matcher(want)
        for i, item in enumerate(self.backlog):
            if match(item):
                del self.backlog[i]
                return item
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                item = self.read(max(0.0, deadline - time.monotonic()))
            except (TimeoutError, Closed) as e:
                raise AssertionError(
                    f"never got {want!r}; unconsumed: {_tail(self.backlog)}; {e}") from e
            if match(item):
                return item
            self.backlog.append(item)

    def poll(self, timeout: float) -> None:
        """Read whatever arrives within ``timeout`` into the backlog (answering pings)."""
        try:
            self.backlog.append(self.read(timeout))
        except TimeoutError:
            pass

    def drain(self) -> list:
        """Take the backlog (what arrived but no ``expect`` asked for)."""
        items, self.backlog = self.backlog, []
        return items

    def expect_closed(self, timeout: float | None = None) -> list:
        """Read until the server closes; return everything unconsumed before that."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self.backlog.append(self.read(max(0.0, deadline - time.monotonic())))
            except Closed:
                return self.drain()
            except TimeoutError as e:
                raise AssertionError(f"connection still open; got: {_tail(self.backlog)}") from e

    def request(self, obj: dict, timeout: float | None = None) -> dict:
        """Send a request carrying an id; return its ack or error."""
        self.send_json(obj)
        rid = obj["id"]
        return self.expect(lambda e: isinstance(e, dict) and e.get("id") == rid
                           and e.get("type") in ("ack", "error"), timeout)


class LineClient(_Expecting):
    """A telnet-like user (text mode) or, after ``json_mode()``, a JSON-lines script."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", source: str | None = None,
                 rcvbuf: int | None = None, auto_pong: bool = True,
                 timeout: float = DEFAULT_TIMEOUT):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect, so the advertised window is small from the start.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.auto_pong = auto_pong
        self.json = False
        self.buf = b""
        self.raw_lines = []  # every complete line as received, CRLF included
        self.seen = []  # every decoded line/event, in order
        self.backlog = []
        self.pings = 0
        self.closed = False

    # -- output --------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, line: str, end: bytes = b"\r\n") -> None:
        self.sock.sendall(line.encode("utf-8") + end)

    def send_json(self, obj, end: bytes = b"\n") -> None:
        self.sock.sendall(json.dumps(obj).encode("utf-8") + end)

    # -- input ---------------------------------------------------------------
    def _read_raw_line(self, deadline: float) -> bytes:
        while b"\n" not in self.buf:
            if self.closed:
                raise Closed(f"connection closed; last seen: {_tail(self.seen)}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete line in time; last seen: {_tail(self.seen)}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                if self.buf:
                    break
                continue
            self.buf += chunk
        line, sep, self.buf = self.buf.partition(b"\n")
        raw = line + sep
        self.raw_lines.append(raw)
        return raw

    def read(self, timeout: float | None = None):
        """The next line (str, no CRLF) or, in JSON mode, the next event (dict)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            raw = self._read_raw_line(deadline)
            text = raw.rstrip(b"\r\n").decode("utf-8")
            item = json.loads(text) if self.json else text
            self.seen.append(item)
            if self._is_ping(item):
                self.pings += 1
                if not self.auto_pong:
                    return item
                if self.json:
                    self.send_json({"type": "pong"})
                else:
                    self.send("/pong")
                continue
            return item

    def _is_ping(self, item) -> bool:
        if self.json:
            return subset(item, {"type": "ping"})
        return item.startswith("PING")

    # -- helpers -----------------------------------------------------------------
    def login(self, nick: str, room: str | None = None) -> "LineClient":
        """Text mode: read the greeting, take a nick, join a room."""
        self.expect("Welcome")
        self.send(f"/nick {nick}")
        self.expect(f"you are now {nick}")
        if room is not None:
            self.send(f"/join {room}")
            self.expect(f"now talking in {room}")
        return self

    def json_mode(self) -> "LineClient":
        self.send("/json")
        self.json = True
        self.expect({"type": "ack", "request": "json"})
        return self

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class WSClient(_Expecting):
    """A real WebSocket client (websocket-client) speaking JSON frames at /ws."""

    def __init__(self, port: int, *, path: str = "/ws", timeout: float = DEFAULT_TIMEOUT,
                 scheme: str = "ws", **options):
        self.ws = websocket.create_connection(f"{scheme}://127.0.0.1:{port}{path}",
                                              timeout=timeout, **options)
        self.timeout = timeout
        self.seen = []
        self.backlog = []
        self.pings = 0
        self.close_code = None
        self.close_reason = None
        self.closed = False
        self._ids = 0

    EVENT_OPCODE = websocket.ABNF.OPCODE_TEXT  # the frames events come in

    @staticmethod
    def decode(data: bytes) -> dict:
        return json.loads(data)

    def send_json(self, obj) -> None:
        self.ws.send(json.dumps(obj))

    def send_text(self, data, opcode=websocket.ABNF.OPCODE_TEXT) -> None:
        self.ws.send(data, opcode)

    def read(self, timeout: float | None = None) -> dict:
        """The next JSON event; pings are answered (by the library) and counted."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            opcode, data = next_data_frame(self, deadline)
            if opcode == self.EVENT_OPCODE:
                event = self.decode(data)
                self.seen.append(event)
                return event

    def request(self, obj: dict, timeout: float | None = None) -> dict:
        """Send with a fresh id (unless given); return the matching ack or error."""
        if "id" not in obj:
            self._ids += 1
            obj = {**obj, "id": f"r{self._ids}"}
        return super().request(obj, timeout)

    def login(self, nick: str, room: str | None = None) -> "WSClient":
        self.expect({"type": "hello"})
        ack = self.request({"type": "nick", "nick": nick})
        assert ack["type"] == "ack", ack
        if room is not None:
            ack = self.request({"type": "join", "room": room})
            assert ack["type"] == "ack", ack
        return self

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except Exception:
            # Best effort: the server may already have gone.
            self.ws.shutdown()


class PBClient(WSClient):
    """A real WebSocket client (websocket-client) speaking the chatd.protobuf.v1
    subprotocol: requests and events are the JSON dicts, binary on the wire."""

    EVENT_OPCODE = websocket.ABNF.OPCODE_BINARY

    def __init__(self, port: int, **options):
        options.setdefault("subprotocols", ["chatd.protobuf.v1"])
        super().__init__(port, **options)

    @staticmethod
    def decode(data: bytes) -> dict:
        return decode_event(data)

    def send_json(self, obj) -> None:  # the same requests, as protobuf
        self.ws.send_binary(encode_request(obj))


def next_data_frame(client, deadline: float) -> tuple[int, bytes | str]:
    """The next data frame (opcode, payload) on a websocket-client ``client.ws`` by
    ``deadline`` (time.monotonic); pings are answered by the library and counted in
    ``client.pings``; a close frame or a lost connection sets ``client.closed``
    (and ``close_code``, ``close_reason``) and raises Closed."""
    while True:
        if client.closed:
            raise Closed(f"closed {client.close_code} {client.close_reason!r}; "
                         f"last seen: {_tail(client.seen)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no frame in time; last seen: {_tail(client.seen)}")
        client.ws.settimeout(remaining)
        try:
            opcode, frame = client.ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            client.closed = True
            continue
        if opcode == websocket.ABNF.OPCODE_PING:
            client.pings += 1  # recv_data_frame already sent the pong
        elif opcode == websocket.ABNF.OPCODE_CLOSE:
            client.closed = True
            if len(frame.data) >= 2:
                client.close_code = struct.unpack("!H", frame.data[:2])[0]
                client.close_reason = frame.data[2:].decode("utf-8", "replace")
        elif opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            return opcode, frame.data


def pump(*clients, until, what: str, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Keep several clients reading (and answering pings) until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        for c in clients:
            c.poll(0.02)
