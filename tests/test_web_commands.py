"""The web client's slash commands read their arguments as the line protocol does.

chatd/static/app.js keeps its own table (it adds browser behaviour to each
command); this pins its request type, argument names and required count to
chatd.commands, so the two cannot drift apart unnoticed.
"""

import re
from pathlib import Path

from chatd.commands import _COMMANDS

APP_JS = (Path(__file__).parent.parent / "chatd" / "static" / "app.js").read_text()
ENTRY = re.compile(r'^ {4}(\w+): \{ (?:type: "(\w+)", )?args: \[([^\]]*)\](?:, required: (\d))?',
                   re.M)
# Only meaningful on the line port.
LINE_ONLY = {"json", "pong"}


def web_table() -> dict:
    start = APP_JS.index("const COMMANDS = {")
    block = APP_JS[start:APP_JS.index("\n  };", start)]
    table = {}
    for name, kind, args, required in ENTRY.findall(block):
        table[name] = (kind or name, tuple(a.strip().strip('"') for a in args.split(",")
                                           if a.strip()), int(required or 0))
    return table


def web_aliases() -> dict:
    body = re.search(r"const ALIASES = \{([^}]*)\}", APP_JS).group(1)
    return dict(re.findall(r'(\w+): "(\w+)"', body))


def test_every_line_command_is_in_the_web_client_with_the_same_arguments():
    table, aliases = web_table(), web_aliases()
    assert len(table) >= 20, "the COMMANDS table in app.js was not found"
    for name, spec in _COMMANDS.items():
        if name in LINE_ONLY:
            continue
        target = aliases.get(name, name)
        assert target in table, f"/{name} is missing from the web client"
        assert table[target] == _COMMANDS[target], f"/{target} differs: {table[target]}"
        assert spec[0] == _COMMANDS[target][0], f"alias /{name} means something else"
