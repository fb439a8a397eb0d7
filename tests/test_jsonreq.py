"""Strict JSON requests: hostile shapes are refused with a clear error, and the
connection stays usable."""

import json

import pytest

from chatd.errors import ChatError
from chatd.jsonreq import parse_json_request


@pytest.mark.parametrize("text", ["[" * 1000 + "]" * 1000,
                                  '{"type": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}",
                                  '{"a":' * 2000 + "1" + "}" * 2000])
def test_deep_nesting_is_invalid_json_not_a_crash(text):
    with pytest.raises(ChatError) as e:
        parse_json_request(text)
    assert e.value.code == "invalid_json"


def test_nesting_a_request_may_need_is_fine():
    text = '{"type": "ping", "id": ' + "[" * 50 + "]" * 50 + "}"
    assert parse_json_request(text)["type"] == "ping"


def test_brackets_inside_strings_are_just_text():
    text = "[" * 200 + " a long bracket drawing " + "{" * 200
    assert parse_json_request(json.dumps({"type": "message", "text": text}))["text"] == text


def test_a_deep_line_leaves_the_connection_open(chat):
    client = chat.line("alice", json_mode=True)
    client.send("[" * 1000 + "]" * 1000)
    [err] = client.json()
    assert err["code"] == "invalid_json"
    client.send_json({"type": "ping", "id": 1})
    assert client.json()[0]["request"] == "ping"
    assert client.open


@pytest.mark.parametrize("field", ["since", "before", "limit"])
def test_huge_numbers_are_bad_requests_not_store_faults(chat, field):
    client = chat.line("alice", "#r", json_mode=True)
    client.send_json({"type": "history", "room": "#r", field: 10**30, "id": 7})
    [err] = client.json()
    assert (err["code"], err["id"]) == ("bad_request", 7)
    assert chat.service.store.healthy
