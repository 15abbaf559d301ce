"""The public API is what each part's ``__init__`` exports, and it changes only on purpose.

``tests/api_surface.txt`` lists every public name. After a deliberate change to an
``__all__``, write the listing again with ``.venv/bin/python -m tests.packaging.test_api_surface``
and commit it with the change.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import fleetwatch

LISTING = Path(__file__).resolve().parents[1] / "api_surface.txt"
#: The one public module that is not a package: the exception tree, imported by name everywhere.
PUBLIC_MODULES = {"fleetwatch.errors"}


def public_modules() -> list[ModuleType]:
    """Every importable fleetwatch module none of whose names is private."""
    names = ["fleetwatch"] + [
        info.name for info in pkgutil.walk_packages(fleetwatch.__path__, "fleetwatch.")
    ]
    public = [n for n in names if not any(part.startswith("_") for part in n.split(".")[1:])]
    return [importlib.import_module(name) for name in public]


def sort_key(name: str) -> tuple[int, str]:
    """isort's order, as ruff keeps ``__all__``: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def surface() -> list[str]:
    """``module.name`` for every name every public module exports."""
    return [f"{m.__name__}.{name}" for m in public_modules() for name in m.__all__]


def test_every_public_module_is_a_part_with_a_sorted_all() -> None:
    """Implementation modules are private: a public module is a package (a part) or the
    exception tree, and each has an ``__all__``, sorted, naming what it defines."""
    for module in public_modules():
        assert hasattr(module, "__path__") or module.__name__ in PUBLIC_MODULES, module.__name__
        exported = list(module.__all__)
        assert exported == sorted(exported, key=sort_key), module.__name__
        assert [n for n in exported if not hasattr(module, n)] == [], module.__name__


def test_the_public_api_is_the_checked_in_listing() -> None:
    """Every ``__all__`` together equals ``tests/api_surface.txt``: an export added or removed
    by accident fails here (write the listing again on purpose, see the module docstring)."""
    listed = LISTING.read_text().split()
    actual = surface()
    assert {
        "added": sorted(set(actual) - set(listed)),
        "removed": sorted(set(listed) - set(actual)),
    } == {
        "added": [],
        "removed": [],
    }
    assert actual == listed  # the same order too, so the listing reads part by part


def test_examples_and_docs_import_only_public_names() -> None:
    """Every ``from fleetwatch... import`` in the examples, the README and the docs names a
    public module and names it exports."""
    root = LISTING.parents[1]
    texts = [*root.glob("examples/*.py"), root / "README.md", *root.glob("docs/*.md")]
    exported = set(surface())
    seen = 0
    for path in texts:
        for line in path.read_text().splitlines():
            found = re.match(r"\s*from (fleetwatch[\w.]*) import ([\w, ]+)$", line)
            if found is None:
                continue
            module, names = found.group(1), [n.strip() for n in found.group(2).split(",")]
            seen += 1
            assert [f"{module}.{n}" for n in names if f"{module}.{n}" not in exported] == [], (
                f"{path.name}: {line.strip()}"
            )
    assert seen >= 5  # the scan found the imports it is about


if __name__ == "__main__":
    LISTING.write_text("\n".join(surface()) + "\n")
    print(f"wrote {LISTING} ({len(surface())} names)")
