"""The import rules of the layers (README, Development, Layout), checked on the source's AST.

Entry (``tap.py``, ``cli/``) -> Web -> Client and Store -> DICOM; ``config.py`` is a value
object at the bottom that every layer may import. Imports under ``if TYPE_CHECKING`` count too.
"""

from __future__ import annotations

import ast
import os

from twisted.trial import unittest

import dwdaemon

PACKAGE = os.path.dirname(os.path.abspath(dwdaemon.__file__))

#: Layer of each first-level part of the package (a folder, or a module at the top).
#: ``dwdaemon`` itself (``__version__``) may be imported by every layer.
ALLOWED: dict[str, set[str]] = {
    "tap": {"*"},
    "workers": {"*"},  # the entry of worker processes (parent and workers), beside tap
    "cli": {"*"},
    "web": {"web", "client", "store", "jobs", "threads", "dicom", "config"},
    "client": {"client", "threads", "dicom", "config"},
    "jobs": {"store", "threads", "config"},
    "store": {"store", "threads", "dicom", "config"},
    "threads": set(),
    "balance": set(),  # connections spread over worker processes (used by workers)
    "logs": set(),
    "dicom": {"dicom", "config"},
}
#: ``config.py`` reads the table of character sets to check ``DefaultEncoding``.
CONFIG_ALLOWED = {"dwdaemon.dicom.encodings"}
#: Third-party packages a layer must not use (DICOM logic is pure, no reactor in it).
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "dicom": {"twisted", "klein", "treq", "werkzeug", "psycopg"},
    "store": {"klein", "treq", "werkzeug"},
    "client": {"klein", "werkzeug", "psycopg"},
}


def modules() -> list[tuple[str, str]]:
    """``(part, path)`` of every Python module of the package."""
    out = []
    for folder, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, PACKAGE).split(os.sep)
            part = rel[0][:-3] if len(rel) == 1 else rel[0]
            out.append((part, path))
    return sorted(out)


def imported(path: str) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    with open(path, encoding="utf-8") as fp:
        tree = ast.parse(fp.read(), path)
    package = os.path.relpath(os.path.dirname(path), os.path.dirname(PACKAGE)).replace(
        os.sep, ".")
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # "from dwdaemon.web import stow" imports the module dwdaemon.web.stow
            names.update(f"{module}.{alias.name}" for alias in node.names
                         if module in ("dwdaemon", "dwdaemon.web", "dwdaemon.dicom"))
    return names


def part_of(name: str) -> str | None:
    """The package part an absolute module name belongs to (None outside the package)."""
    pieces = name.split(".")
    if pieces[0] != "dwdaemon":
        return None
    return pieces[1] if len(pieces) > 1 else ""


class LayerTests(unittest.TestCase):
    def test_the_walk_sees_the_layers(self) -> None:
        parts = {part for part, _ in modules()}
        self.assertTrue({"web", "client", "store", "dicom", "tap", "config"} <= parts, parts)
        web = [p for part, p in modules() if part == "web"]
        self.assertIn("dwdaemon.store.store",
                      set().union(*(imported(p) for p in web)))  # the walk finds imports

    def test_each_layer_imports_only_the_layers_below(self) -> None:
        wrong = []
        for part, path in modules():
            names = imported(path)
            rel = os.path.relpath(path, PACKAGE)
            if part == "config":
                inside = {n for n in names if part_of(n) not in (None, "", "config")}
                wrong += [f"{rel} imports {n}" for n in sorted(inside - CONFIG_ALLOWED)]
                continue
            if part == "__init__":
                continue
            self.assertIn(part, ALLOWED, f"{rel}: a new part of the package needs its rule")
            allowed = ALLOWED[part]
            for name in sorted(names):
                target = part_of(name)
                if target in (None, "", "config") or "*" in allowed:
                    continue
                if target not in allowed:
                    wrong.append(f"{rel} imports {name}")
            for name in sorted(names):
                top = name.split(".")[0]
                if top in FORBIDDEN_THIRD_PARTY.get(part, set()):
                    wrong.append(f"{rel} imports {name}")
        self.assertEqual(wrong, [])

    def test_a_wrong_import_is_seen(self) -> None:
        """The checker itself: a module of store/ importing web/ is reported."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "bad.py")
        with open(path, "w", encoding="utf-8") as fp:
            fp.write("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from dwdaemon.web.routing import RouteGroup\n"
                     "from dwdaemon.client import registry\n")
        names = imported(path)
        self.assertIn("dwdaemon.web.routing", names)
        self.assertEqual({part_of(n) for n in names if part_of(n)}, {"web", "client"})
        self.assertNotIn("web", ALLOWED["store"])
        self.assertNotIn("client", ALLOWED["store"])
        self.assertNotIn("web", ALLOWED["client"])
