"""The shape of the code, checked: chatd's modules import each other without
cycles, and none reaches into another object's private state (the one
declared exception: chatd/fastsend.py reads Twisted's transport internals)."""

import ast
from pathlib import Path

CHATD = Path(__file__).resolve().parent.parent / "chatd"
# Reading a framework's private attributes is allowed in one module, which says so.
PRIVATE_READERS = {"fastsend.py"}
ALLOWED = {
    "os._exit",  # documented API despite the underscore
    # Twisted's own strports.service() sets it; a tls: listener must fail the same way.
    "svc._raiseSynchronously",
}


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in CHATD.rglob("*.py"):
        name = ".".join(("chatd",) + path.relative_to(CHATD).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text(encoding="utf-8"))
    return out


def imports(tree: ast.Module, known) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {name for name in found if name in known}


def test_no_import_cycles_in_chatd():
    mods = modules()
    graph = {name: imports(tree, mods) - {name} for name, tree in mods.items()}
    # A package's __init__ is imported by its submodules' importers anyway.
    done, stack = set(), []

    def visit(name):
        if name in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(name):]
                                                                 + [name]))
        if name in done:
            return
        stack.append(name)
        for dep in sorted(graph[name]):
            if not (name.startswith(dep + ".")):  # a submodule importing its package
                visit(dep)
        stack.pop()
        done.add(name)
    for name in sorted(graph):
        visit(name)
    assert "chatd.service" in graph and graph["chatd.service"]  # the scan sees imports


def test_no_module_touches_another_objects_private_attributes():
    offences = []
    for path in CHATD.rglob("*.py"):
        if path.name in PRIVATE_READERS or path.name.endswith("_pb2.py"):
            continue  # (a *_pb2.py is protoc's output, checked by tests/test_proto_schema.py)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and not (isinstance(node.value, ast.Name)
                             and node.value.id in ("self", "cls", "super"))
                    and not (isinstance(node.value, ast.Call)
                             and getattr(node.value.func, "id", None) == "super")
                    and ast.unparse(node) not in ALLOWED):
                offences.append(f"{path.relative_to(CHATD)}:{node.lineno} .{node.attr}")
    assert offences == []
