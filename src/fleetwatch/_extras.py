"""The optional dependencies, installed as extras, and the error that names the one missing.

The core (health library, registry with the memory store, discovery client, agent, CLI) needs
none of them. ``pip install '.[redis,gateway]'`` from a checkout, or the same with a built
wheel's path, adds them; ``all`` adds every one.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fleetwatch.errors import MissingExtraError

#: Extra -> the modules it makes importable (what ``pyproject.toml`` installs for it).
EXTRAS: dict[str, tuple[str, ...]] = {
    "gateway": ("httptools",),
    "gpu": ("pynvml",),
    "postgres": ("asyncpg",),
    "redis": ("redis",),
}


def missing_extra(extra: str, needed_for: str) -> MissingExtraError:
    """The error for ``needed_for`` (a feature, in words) when ``extra`` is not installed."""
    modules = " and ".join(EXTRAS[extra])
    return MissingExtraError(
        f"{needed_for} needs {modules}, which is not installed: install fleetwatch with its "
        f"{extra!r} extra, pip install 'fleetwatch[{extra}]' from a built wheel or "
        f"pip install '.[{extra}]' from a checkout",
        extra=extra,
    )


def require(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """Import ``module``, or raise :func:`missing_extra`'s error naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise missing_extra(extra, needed_for) from error
