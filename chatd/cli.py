"""The ``chatd`` command: a small dispatcher to subcommands, each a module with ``main(argv)``.

The daemon itself runs under ``twistd chatd``; this is for tools around it.
"""

import importlib
import sys

# subcommand -> (module, one-line summary); a new tool adds one entry.
COMMANDS = {
    "bench": ("chatd.bench", "load-test chatd against bare Twisted/Autobahn relays"),
}


def usage() -> str:
    lines = ["usage: chatd COMMAND [options]", "", "commands:"]
    lines += [f"  {name:10} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run the daemon with: twistd -n chatd --help"]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"chatd: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
