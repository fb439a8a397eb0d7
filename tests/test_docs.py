"""The protocol document keeps up with the code: every error code, command,
request type and event a client can meet is described in docs/protocol.rst."""

import re
from pathlib import Path

import pytest

from chatd import commands, events, helptext
from chatd.dispatch import Dispatcher
from chatd.errors import FATAL_CODES

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = (ROOT / "docs" / "protocol.rst").read_text(encoding="utf-8")
CHATD = ROOT / "chatd"

# ChatError("code", ...) or an error event built directly, Error("code", ...),
# anywhere in the package, whatever the quoting or line wrapping.
_RAISED = re.compile(r"""\b(?:Chat)?Error\(\s*['"]([a-z0-9_]+)['"]""")


def error_codes() -> set[str]:
    codes = set(FATAL_CODES)
    for path in CHATD.rglob("*.py"):
        codes.update(_RAISED.findall(path.read_text(encoding="utf-8")))
    return codes


def test_the_code_scan_finds_the_codes_it_must():
    # Guards the scan itself: a broken regex would make the next test vacuous.
    assert {"nick_taken", "unknown_command", "invalid_json", "flood"} <= error_codes()


@pytest.mark.parametrize("code", sorted(error_codes()))
def test_every_error_code_is_documented(code):
    assert f"``{code}``" in PROTOCOL, f"error code {code!r} is not in docs/protocol.rst"


@pytest.mark.parametrize("command", sorted(commands._COMMANDS))
def test_every_text_command_is_documented(command):
    assert re.search(rf"``/{command}\b", PROTOCOL), f"/{command} is not in docs/protocol.rst"


def request_types() -> set[str]:
    # "pong" is an answer, not a request with a handler.
    types = set(Dispatcher(service=None)._handlers) | {"pong"}
    return types | {spec[0] for spec in commands._COMMANDS.values()}


@pytest.mark.parametrize("kind", sorted(request_types()))
def test_every_request_type_is_documented(kind):
    requests = PROTOCOL.split("\nRequests\n", 1)[1].split("\nEvents\n", 1)[0]
    assert re.search(rf"^``{kind}``$", requests, re.M), f"request {kind!r} has no entry"


def event_types() -> set[str]:
    types = {"message", "action"}  # Message.type depends on its kind
    for obj in vars(events).values():
        kind = getattr(obj, "type", None)
        if isinstance(obj, type) and isinstance(kind, str):
            types.add(kind)
    return types


@pytest.mark.parametrize("kind", sorted(event_types()))
def test_every_event_is_documented(kind):
    section = PROTOCOL.split("\nEvents\n", 1)[1].split("\nErrors\n", 1)[0]
    assert re.search(rf"^``{kind}``$", section, re.M), f"event {kind!r} has no entry"


def test_help_lists_every_command_users_are_told_about():
    # /help is what a telnet user reads; each command it names must exist.
    for line in helptext.HELP_LINES:
        word = line.split()[0]
        if word.startswith("/") and not word.startswith("//"):
            assert word[1:] in commands._COMMANDS, f"/help mentions unknown {word}"


@pytest.mark.parametrize("path", ["README.rst", *sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.rst"))])
def test_document_renders_without_warnings(path):
    # README.rst is also the package's long description: a broken table or
    # title renders as garbage on an index and in every viewer.
    from docutils.core import publish_doctree
    from docutils.utils import SystemMessage

    text = (ROOT / path).read_text(encoding="utf-8")
    try:
        publish_doctree(text, source_path=str(ROOT / path),
                        settings_overrides={"halt_level": 2, "report_level": 2,
                                            "warning_stream": False})
    except SystemMessage as e:
        pytest.fail(f"{path}: {e}")
