"""chatd/proto/chatd.proto against the JSON protocol as the code defines it.

Every list on the JSON side is read from the code (the dispatcher's handlers,
the events module, the ack records, the error codes raised), never copied by
hand, so a request, event, ack field or error code added to one format and
not the other fails here.  And the committed chatd_pb2.py is what
scripts/gen-proto makes from the schema today.
"""

import ast
import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from chatd import acks, events
from chatd.dispatch import Dispatcher
from chatd.errors import FATAL_CODES
from chatd.limits import Limits
from chatd.metrics import ERROR_CODES
from chatd.pbcodec import ACK_FIELDS
from chatd.proto import chatd_pb2 as pb
from chatd.service import ChatService

ROOT = Path(__file__).resolve().parent.parent
CHATD = ROOT / "chatd"


def oneof(message, name) -> dict:
    """The oneof's field names -> their message types' descriptors."""
    return {f.name: f.message_type for f in message.DESCRIPTOR.oneofs_by_name[name].fields}


def field_names(descriptor) -> set:
    return {f.name for f in descriptor.fields}


# -- the JSON side, read from the code ---------------------------------------------------
def json_request_types() -> set:
    return set(Dispatcher(service=None)._handlers) | {"pong"}  # pong: handled before dispatch


def json_request_fields() -> dict:
    """type -> the request fields its handler reads (``req.get("x")``, ``_req_str(req, "x")``)."""
    handlers = Dispatcher(service=None)._handlers
    read = {}
    for kind, handler in handlers.items():
        source = inspect.getsource(handler)
        names = set(re.findall(r'(?:req\.get\(|_(?:req|opt)_\w+\(req, )"(\w+)"', source))
        if re.search(r"self\.message\(", source):  # action is a message of another kind
            names |= set(re.findall(r'(?:req\.get\(|_(?:req|opt)_\w+\(req, )"(\w+)"',
                                    inspect.getsource(Dispatcher.message)))
        read[kind] = names
    read["pong"] = set()
    return read


def _calls(cls_name: str):
    """Every ``cls_name(...)`` call in chatd/, with the function it sits in."""
    for path in CHATD.rglob("*.py"):
        if path.name.endswith("_pb2.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == cls_name):
                        yield func, node


def _values_of(func, arg) -> set:
    """The string constants an argument can be: a literal, or a local assigned literals."""
    if isinstance(arg, ast.Constant):
        return {arg.value}
    found = set()
    if isinstance(arg, ast.Name):
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == arg.id
                                                    for t in node.targets):
                found |= {c.value for c in ast.walk(node.value)
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return found


def json_event_types() -> set:
    types = set()
    for _, cls in inspect.getmembers(events, inspect.isclass):
        if cls.__module__ == events.__name__ and isinstance(getattr(cls, "type", None), str):
            types.add(cls.type)
    # A Message's type is its kind: the request types the dispatcher turns into one.
    tree = ast.parse(inspect.getsource(Dispatcher))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "message":
            kinds = {d.value for d in node.args.defaults}
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "message" and len(node.args) == 3):
            types.add(node.args[2].value)
    types |= kinds
    # A RoomChange's type is its "what", wherever one is made.
    for func, call in _calls("RoomChange"):
        types |= _values_of(func, call.args[1])
    return types


def json_error_codes() -> set:
    raised = set()
    for path in CHATD.rglob("*.py"):
        if not path.name.endswith("_pb2.py"):
            raised.update(re.findall(r'ChatError\(\s*"([a-z0-9_]+)"', path.read_text()))
    return raised | ERROR_CODES | FATAL_CODES


# -- the checks ------------------------------------------------------------------------
def test_the_json_side_is_really_read_from_the_code():
    # Guards the readers above against finding nothing and so passing vacuously.
    assert {"message", "action", "join", "gban", "pong"} <= json_request_types()
    assert json_request_fields()["join"] == {"room", "password", "since"}
    assert json_request_fields()["action"] == {"room", "text"}
    assert {"message", "action", "ban", "unban", "op", "deop", "mode", "hello",
            "ack", "error"} <= json_event_types()
    assert {"flood", "invalid_utf8", "excess_flood"} <= json_error_codes()


def test_every_request_type_is_in_both_formats():
    assert set(oneof(pb.Request, "request")) == json_request_types()


def test_every_request_field_is_in_both_formats():
    proto = {kind: field_names(desc) for kind, desc in oneof(pb.Request, "request").items()}
    assert proto == json_request_fields()


def test_every_event_type_is_in_both_formats():
    assert set(oneof(pb.Event, "event")) == json_event_types()


def test_every_ack_record_is_in_both_formats_with_the_same_fields():
    records = {name: cls for name, cls in inspect.getmembers(acks, inspect.isclass)
               if issubclass(cls, acks.AckData) and cls is not acks.AckData}
    assert set(ACK_FIELDS) == set(records)
    by_type = {desc.name: desc for desc in oneof(pb.Ack, "data").values()}
    for name, cls in records.items():
        assert field_names(by_type[name]) == {f.name for f in dataclasses.fields(cls)}, name


def test_every_event_has_the_same_fields_in_both_formats():
    proto = oneof(pb.Event, "event")
    for _, cls in inspect.getmembers(events, inspect.isclass):
        if cls.__module__ != events.__name__ or not dataclasses.is_dataclass(cls):
            continue
        if cls in (events.Ack, events.Error):
            continue  # their own envelopes: checked below
        names = {f.name for f in dataclasses.fields(cls)} - {"kind", "what"}
        # JSON names the sender "from"; a RoomChange's target is "nick"
        names = {"from" if n == "nick" and cls in (events.Message, events.Private) else
                 "nick" if n == "target" else n for n in names}
        kind = cls.type if isinstance(getattr(cls, "type", None), str) else None
        descs = [proto[kind]] if kind else [d for d in proto.values()
                                            if d.name == cls.__name__]
        assert descs, cls
        for desc in descs:
            assert field_names(desc) == names, cls.__name__
    ack_fields = {f.name for f in dataclasses.fields(events.Ack)} - {"data"}
    assert field_names(pb.Ack.DESCRIPTOR) - set(ACK_FIELDS.values()) == ack_fields
    assert field_names(pb.Error.DESCRIPTOR) == {f.name for f in dataclasses.fields(events.Error)}


def test_hello_limits_carry_every_public_limit():
    public = ChatService(Limits()).public_limits()
    assert field_names(pb.Event.Limits.DESCRIPTOR) == set(public)


def test_every_error_code_is_in_both_formats():
    proto = set(pb.Error.Code.keys()) - {"unspecified"}
    assert proto == json_error_codes()
    assert pb.Error.Code.Value("unspecified") == 0


def test_field_numbers_leave_room_for_extensions_and_are_unique():
    for message in (pb.Request, pb.Event, pb.Ack, pb.Error):
        desc = message.DESCRIPTOR
        numbers = [f.number for f in desc.fields]
        assert len(numbers) == len(set(numbers))
        assert not any(200 <= n < 300 for n in numbers), desc.name
    assert "reserved 200 to 299;" in (CHATD / "proto" / "chatd.proto").read_text()


def test_generated_code_is_what_the_pinned_generator_makes(tmp_path):
    # The same command scripts/gen-proto runs, into a scratch copy of the schema.
    (tmp_path / "chatd" / "proto").mkdir(parents=True)
    shutil.copy(CHATD / "proto" / "chatd.proto", tmp_path / "chatd" / "proto")
    script = ROOT / "scripts" / "gen-proto"
    shutil.copy(script, tmp_path / "gen-proto")
    (tmp_path / "scripts").mkdir()
    shutil.copy(script, tmp_path / "scripts" / "gen-proto")
    subprocess.run(["sh", str(tmp_path / "scripts" / "gen-proto"), sys.executable],
                   check=True, timeout=60)
    fresh = (tmp_path / "chatd" / "proto" / "chatd_pb2.py").read_bytes()
    assert fresh == (CHATD / "proto" / "chatd_pb2.py").read_bytes(), (
        "chatd_pb2.py is stale: run scripts/gen-proto")


def test_the_schema_ships_in_the_package():
    setup = (ROOT / "setup.cfg").read_text()
    assert "chatd.proto\n" in setup  # the package
    assert re.search(r"chatd = .*proto/chatd\.proto", setup)  # the .proto as package data


# -- evolution: numbers once given are never changed or reused ----------------------------
NUMBERS = Path(__file__).resolve().parent / "data" / "chatd_proto_numbers.json"


def current_numbers() -> dict:
    """message or enum full name -> {field or value name: number}, from the schema."""
    out = {}

    def walk(desc):
        out[desc.full_name] = {f.name: f.number for f in desc.fields}
        for enum in desc.enum_types:
            out[enum.full_name] = {v.name: v.number for v in enum.values}
        for nested in desc.nested_types:
            walk(nested)

    for message in pb.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    return out


def reserved(full_name: str) -> tuple[set, set]:
    """The reserved numbers and names of a message or enum."""
    from google.protobuf import descriptor_pb2
    try:
        desc = pb.DESCRIPTOR.pool.FindMessageTypeByName(full_name)
        proto = descriptor_pb2.DescriptorProto()
        ends_inclusive = False
    except KeyError:
        desc = pb.DESCRIPTOR.pool.FindEnumTypeByName(full_name)
        proto = descriptor_pb2.EnumDescriptorProto()
        ends_inclusive = True  # an enum's reserved range includes its end
    desc.CopyToProto(proto)
    numbers = set()
    for r in proto.reserved_range:
        numbers.update(range(r.start, r.end + ends_inclusive))
    return numbers, set(proto.reserved_name)


def number_problems(recorded: dict, now: dict) -> list:
    problems = []
    for message, fields in recorded.items():
        current = now.get(message)
        if current is None:
            problems.append(f"{message} is gone: keep it, or reserve its number where it is used")
            continue
        numbers, names = reserved(message)
        for name, number in fields.items():
            if name in current:
                if current[name] != number:
                    problems.append(f"{message}.{name} was {number}, is now {current[name]}")
            elif number not in numbers or name not in names:
                problems.append(f"{message}.{name} ({number}) removed without "
                                f"'reserved {number};' and 'reserved \"{name}\";'")
        used = {number: name for name, number in fields.items()}
        for name, number in current.items():
            if name not in fields and number in used:
                problems.append(f"{message}.{name} reuses {number}, once {used[number]}")
    for message, fields in now.items():
        new = set(fields) - set(recorded.get(message, {}))
        if new:
            problems.append(f"{message}: record {sorted(new)} in {NUMBERS.name}")
    return problems


def test_no_field_number_is_ever_changed_or_reused():
    """tests/data/chatd_proto_numbers.json records every number ever given out.

    A field or enum value still in the schema keeps its number; one removed has
    its number and name reserved; a new one takes a number never used, and is
    added to the record in the same commit (that is the moment to think twice).
    """
    assert number_problems(json.loads(NUMBERS.read_text()), current_numbers()) == []


def test_the_number_check_catches_a_change_a_reuse_and_a_new_field():
    recorded = json.loads(NUMBERS.read_text())
    recorded["chatd.v1.Request"]["retired_request"] = 99  # as if once given out
    now = current_numbers()
    now["chatd.v1.Request"]["newcomer"] = 99
    now["chatd.v1.Event.Join"]["room"] = 7
    problems = "\n".join(number_problems(recorded, now))
    assert "chatd.v1.Request.newcomer reuses 99, once retired_request" in problems
    assert "retired_request (99) removed without 'reserved 99;'" in problems
    assert "chatd.v1.Event.Join.room was 1, is now 7" in problems
    assert "chatd.v1.Request: record ['newcomer']" in problems
