"""Test doubles shared by the whole suite: one in-memory sink, one set of
WebSocket frame helpers.  Nothing here opens a socket or reads the clock."""

import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import succeed
from zope.interface import implementer

from chatd.errors import ChatError
from chatd.interfaces import IClientSink


def keep_events(event):
    """A wire format that keeps the event itself, for tests that read events."""
    return event


@implementer(IClientSink)
class FakeSink:
    """A connection in memory: keeps what the service writes to it.

    ``wire_format`` is a real one (chatd.wire) or, by default, the identity, so
    ``payloads`` holds the events themselves.  Given the ``service``, a close
    reports the connection gone at once, as a transport would; without it the
    connection stays open after a close (a client that never goes away).
    """

    def __init__(self, wire_format=keep_events, service=None):
        self.wire_format = wire_format
        self.service = service
        self.session = None
        self.payloads = []
        self.pings = 0
        self.closed = None
        self.aborted = False

    def write(self, payload):
        self.payloads.append(payload)

    write_reply = write

    def send_ping(self):
        self.pings += 1

    def close_session(self, reason):
        self.closed = reason
        if self.service is not None and self.session is not None:
            self.service.disconnected(self.session, reason)

    def abort(self):
        self.aborted = True

    def switch_format(self, name):
        raise ChatError("unknown_type", f'unknown request type "{name}"')

    def take(self) -> list:
        got, self.payloads = self.payloads, []
        return got


# -- WebSocket frames --------------------------------------------------------------
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def frame(payload: bytes, opcode=TEXT) -> bytes:
    """A masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Server frames (unmasked, unfragmented) to (opcode, payload)."""
    out = []
    while data:
        assert data[0] & 0x80, "fragmented frame"
        opcode, n, i = data[0] & 0x0F, data[1] & 0x7F, 2
        assert not data[1] & 0x80, "server frames are not masked"
        if n == 126:
            n, i = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, i = int.from_bytes(data[2:10], "big"), 10
        out.append((opcode, data[i:i + n]))
        data = data[i + n:]
    return out


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big")


class InlinePasswords:
    """Real argon2id with the cheapest parameters, run inline rather than on a
    thread pool, so unit tests on a fake clock stay synchronous."""

    def __init__(self):
        self.hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

    def start(self):
        pass

    def stop(self):
        pass

    def needs_rehash(self, password_hash):
        return False

    def hash(self, password):
        return succeed(self.hasher.hash(password))

    def verify(self, password_hash, password):
        try:
            return succeed(bool(password_hash) and self.hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return succeed(False)
