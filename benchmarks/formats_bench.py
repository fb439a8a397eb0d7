"""JSON against Protocol Buffers on chatd's WebSocket, measured in one batch.

Run it from a checkout: ``python benchmarks/formats_bench.py [options]``.

Two parts, one after the other on the same machine:

* **in-process**: the events a chat sends most (a room message the size of
  bench.py's, a join, the sender's ack) encoded with chatd's own wire formats
  (``chatd.wire.ws_frame`` and ``pb_frame``): bytes of payload and of the whole
  frame, the server's cost to encode one broadcast (paid once per format per
  broadcast, not per member), and the client's cost to decode one event
  (JSON: ``json.loads``; protobuf: parsing the ``Event`` alone, and into the
  same dict JSON gives, as ``chatd.client`` does);
* **fan-out**: ``bench.py fanout`` with targets ``chatd-ws`` and ``chatd-pb``
  (the same daemon, the ``chatd.protobuf.v1`` subprotocol) back to back, at
  N=100 and N=1000 members: deliveries/s and server CPU per delivery.

Bytes on the wire per delivery are the frame bytes: every member is written
the same prepared frame.  It prints one JSON line per measurement, then a table.

This module also gives bench.py its ``chatd-pb`` target (``TARGETS``); it does
not import bench.py, so bench.py can import it.
"""

import argparse
import json
import subprocess
import sys
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
PROTOBUF_V1 = b"chatd.protobuf.v1"


# -- the chatd-pb target for bench.py ------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and sub-messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _binary_frame(payload: bytes) -> bytes:
    """One masked client binary frame (zero mask key: the payload goes as is)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 65536:
        head = bytes((0x82, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x82, 0xFF)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class ChatdProtobuf:
    """bench.py's dialect for chatd.protobuf.v1, written by hand from chatd.proto
    (Request: message = 2, join = 7, nick = 9; their text, room, nick = 2, 1, 1),
    so the generator stays as cheap as its JSON twin (no protobuf runtime)."""

    websocket = True
    echo = True
    subprotocol = PROTOBUF_V1
    # "~~" alone turns up in a message's timestamp bytes about once in 10,000 events
    # (and counts as 100 deliveries at N=100); six in a row do not.
    mark = b"~~~~~~"
    ready_mark = _field(1, b"join")  # Ack.request == "join": only our join's ack

    def login(self, nick: str, room: str) -> bytes:
        return (_binary_frame(_field(9, _field(1, nick.encode())))
                + _binary_frame(_field(7, _field(1, room.encode()))))

    def say(self, text: bytes) -> bytes:
        return _binary_frame(_field(2, _field(2, text)))

    def say_in(self, room: str, text: bytes) -> bytes:
        return self.say(text)  # the current room, as bench.Dialect does

    def pong(self, data: bytes) -> bytes:
        return b""  # WebSocket pings are answered by the client's frame layer


# target name -> (dialect, how to start it, transport), as bench.TARGETS
TARGETS = {"chatd-pb": (ChatdProtobuf(), "chatd", "ws")}
BASELINE_OF = {"chatd-pb": "bare-ws"}


# -- in-process: sizes and encode/decode costs --------------------------------------------
def sample_events(size: int):
    from chatd import acks
    from chatd.events import Ack, Join, Message

    text = "x" * max(0, size - 24) + "@12:3456:1764570000123456789~~"
    return {
        "message": Message("#bench0", "b512r1n42", text, 123456, 1764570000.123456),
        "join": Join("#bench0", "b512r1n42", 1764570000.123456),
        "message ack": Ack("message", "r17", acks.MessageAck("#bench0", 123456,
                                                             1764570000.123456)),
    }


def _per_call_us(fn, arg, number: int) -> float:
    best = min(timeit.repeat(lambda: fn(arg), number=number, repeat=5))
    return round(1e6 * best / number, 3)


def measure_codecs(size: int, number: int) -> list:
    from chatd import wire
    from chatd.pbcodec import decode_event, encode_event
    from chatd.proto import chatd_pb2 as pb

    rows = []
    for name, event in sample_events(size).items():
        js, pbuf = wire.encode_json(event), encode_event(event)
        assert decode_event(pbuf) == json.loads(js)  # the same event, or the numbers mean nothing
        rows.append({
            "part": "codec", "event": name,
            "json_payload_bytes": len(js), "pb_payload_bytes": len(pbuf),
            "json_frame_bytes": len(wire.ws_frame(event)),
            "pb_frame_bytes": len(wire.pb_frame(event)),
            "json_encode_frame_us": _per_call_us(wire.ws_frame, event, number),
            "pb_encode_frame_us": _per_call_us(wire.pb_frame, event, number),
            "json_decode_us": _per_call_us(json.loads, js, number),
            "pb_parse_us": _per_call_us(pb.Event.FromString, pbuf, number),
            "pb_decode_dict_us": _per_call_us(decode_event, pbuf, number),
        })
    return rows


# -- fan-out through the daemon --------------------------------------------------------------
def run_fanout(n: int, messages: int, senders: int, repeat: int, extra) -> list:
    cmd = [sys.executable, str(HERE / "bench.py"), "fanout", "--targets", "chatd-ws,chatd-pb",
           "-n", str(n), "-s", str(senders), "-m", str(messages), "--repeat", str(repeat),
           "--json-only", *extra]
    out = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1):
        raise SystemExit(f"bench.py failed:\n{out.stdout}\n{out.stderr}")
    rows = []
    for line in out.stdout.splitlines():
        r = json.loads(line)
        if "target" in r:
            r["part"] = "fanout"
            rows.append(r)
    return rows


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def report(codec_rows, fanout_rows) -> str:
    out = ["", "per event (in-process; us = microseconds, best of 5)",
           f"{'event':<12} {'bytes JSON':>10} {'bytes PB':>8} {'frame JSON':>10} {'frame PB':>8} "
           f"{'enc JSON':>8} {'enc PB':>7} {'dec JSON':>8} {'parse PB':>8} {'dict PB':>7}"]
    for r in codec_rows:
        out.append(f"{r['event']:<12} {r['json_payload_bytes']:>10} {r['pb_payload_bytes']:>8} "
                   f"{r['json_frame_bytes']:>10} {r['pb_frame_bytes']:>8} "
                   f"{r['json_encode_frame_us']:>8} {r['pb_encode_frame_us']:>7} "
                   f"{r['json_decode_us']:>8} {r['pb_parse_us']:>8} "
                   f"{r['pb_decode_dict_us']:>7}")
    out += ["", "fan-out (median of runs)",
            f"{'N':>5} {'target':<9} {'deliv/s':>9} {'srv us/deliv':>12} {'lost':>5} {'runs':>4}"]
    groups = {}
    for r in fanout_rows:
        groups.setdefault((r["connections"], r["target"]), []).append(r)
    for (n, target), rs in sorted(groups.items()):
        out.append(f"{n:>5} {target:<9} {median(r['deliveries_per_s'] for r in rs):>9,} "
                   f"{median(r.get('server_us_per_delivery') for r in rs)!s:>12} "
                   f"{sum(r['lost'] for r in rs):>5} {len(rs):>4}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/formats_bench.py",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="100,1000", help="fan-out room sizes N")
    p.add_argument("--deliveries", type=int, default=1_000_000,
                   help="fan-out: deliveries per run (messages = this / N / senders)")
    p.add_argument("-s", "--senders", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3, help="rounds of both targets per size")
    p.add_argument("--size", type=int, default=48, help="bytes of message text, as bench.py")
    p.add_argument("--number", type=int, default=20000, help="codec: calls per timing")
    p.add_argument("--bench-arg", action="append", default=[],
                   help="passed to bench.py, repeatable (--bench-arg=--server-cpu=)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(PROJECT))
    started = time.time()
    codec_rows = measure_codecs(args.size, args.number)
    for r in codec_rows:
        print(json.dumps(r), flush=True)
    fanout_rows = []
    for n in (int(x) for x in args.sizes.split(",") if x):
        messages = max(1, args.deliveries // n // args.senders)
        rows = run_fanout(n, messages, min(args.senders, n), args.repeat,
                          ["--size", str(args.size), *args.bench_arg])
        for r in rows:
            print(json.dumps(r), flush=True)
        fanout_rows += rows
    print(report(codec_rows, fanout_rows), file=sys.stderr)
    print(f"\n{time.time() - started:.0f} s", file=sys.stderr)
    return 1 if any(r["lost"] for r in fanout_rows) else 0


if __name__ == "__main__":
    sys.exit(main())
