"""The reference pages that are generated from the code, so that they cannot drift from it:
the CLI (from the Typer app), the configuration (from the pydantic sections) and the HTTP
API (from the OpenAPI documents).

``.venv/bin/python -m tests.docs.references`` writes them into ``docs/reference/``;
``tests/docs/test_references.py`` fails when a page differs from what the code says now.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import httpx
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from fleetwatch.agent import Agent, AgentSettings
from fleetwatch.cli._app import COMMANDS
from fleetwatch.config._checks import CHECK_TYPES
from fleetwatch.config._durations import parse_duration
from fleetwatch.config._host import HostSection, ParamSection, ProfileSection
from fleetwatch.config._loader import AggregationConfig, ServiceConfig
from fleetwatch.config._recovery import RecoverySection
from fleetwatch.config._registry import ServeConfig
from fleetwatch.config._router import RouterSection
from fleetwatch.gateway import Gateway, GatewaySettings
from fleetwatch.gateway._openapi import openapi_document
from fleetwatch.health import HealthScheduler
from fleetwatch.llm import LlmServerSettings
from fleetwatch.observability import HealthMetrics, TaskMetrics
from fleetwatch.registry import Registry
from fleetwatch.registry.stores import MemoryStore
from fleetwatch.registry_api._app import create_app
from fleetwatch.registry_api._node import RegistryNode
from fleetwatch.security import TokenAuth

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


#: ``fleetwatch hosts`` has subcommands: each gets its own section.
HOSTS_SUBCOMMANDS = ("start", "stop", "orders", "cordon", "uncordon", "drain")
#: ``fleetwatch rollout`` too (``SERVICE``: a rollout, which is no subcommand).
ROLLOUT_SUBCOMMANDS = ("SERVICE", "status", "pause", "resume", "undo")


def cli_page() -> str:
    """Every command's ``--help``, as a terminal 100 columns wide prints it."""
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    out = [
        "# CLI reference",
        "",
        "Generated from the Typer app (`python -m tests.docs.references`); a test fails when",
        "it differs from what `fleetwatch COMMAND --help` prints.",
        "",
    ]
    subcommands = [f"hosts {sub}" for sub in HOSTS_SUBCOMMANDS]
    subcommands += [f"rollout {sub}" for sub in ROLLOUT_SUBCOMMANDS]
    for name in ["", *COMMANDS, *subcommands]:
        argv = [sys.executable, "-m", "fleetwatch", *name.split(), "--help"]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=True)
        out += [f"## `fleetwatch {name}`" if name else "## `fleetwatch`"]
        text = "\n".join(line.rstrip() for line in done.stdout.strip("\n").splitlines())
        out += ["", "```text", text, "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _shown(value: Any) -> str:
    """A default as it would be written in TOML (enums by their value)."""
    if isinstance(value, Enum):
        return repr(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return "[" + ", ".join(_shown(v) for v in items) + "]"
    return repr(value)


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        return "" if field.default is None else f"`{_shown(field.default)}`"
    if field.default_factory is not None:
        value = field.default_factory()
        return f"`{_shown(value)}`" if not isinstance(value, BaseModel) else "(table)"
    return "**required**"


def _type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:  # noqa: PLR0911
    """A type as a reader of a TOML file thinks of it: duration, list of str, one of a, b..."""
    if any(getattr(m, "func", None) is parse_duration for m in metadata):
        return "duration"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0], args[1:])
    if origin in (Union, UnionType):
        named = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(named) + (" or none" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {_type_name(args[1])}" if args else "table"
    return getattr(annotation, "__name__", str(annotation))


def _table(model: type[BaseModel]) -> list[str]:
    rows = ["| field | type | default |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        key = field.alias or name
        kind = _type_name(field.annotation, field.metadata).replace("|", "/")
        rows.append(f"| `{key}` | {kind} | {_default(field)} |")
    return rows


def configuration_page() -> str:
    """Every TOML table and field, with its type and default."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the pydantic sections (`python -m tests.docs.references`). Durations take",
        'seconds or strings such as `"500ms"`, `"30s"`, `"10m"`. Unknown fields are refused with',
        "a message naming the file, the table and the field.",
        "",
        "## Health configuration (`fleetwatch check --config`, the agent, `serve_llm_app`)",
        "",
    ]
    for title, model in (("[service]", ServiceConfig), ("[aggregation]", AggregationConfig)):
        out += [f"### `{title}`", "", (model.__doc__ or "").strip(), "", *_table(model), ""]
    for kind, model in CHECK_TYPES.items():
        out += [f'### `[[checks]]` with `type = "{kind}"`', "", (model.__doc__ or "").strip(), ""]
        out += [*_table(model), ""]
    out += ["## Registry configuration (`fleetwatch serve --config`)", ""]
    for name, field in ServeConfig.model_fields.items():
        annotation = field.annotation
        model = getattr(annotation, "__args__", (annotation,))[0]
        table = f"[[{name}]]" if "list" in str(annotation) else f"[{name}]"
        out += [f"### `{table}`", "", (model.__doc__ or "").strip(), "", *_table(model), ""]
    out += ["## Host configuration (`fleetwatch host --config`)", ""]
    for table, model in (
        ("[host]", HostSection),
        ("[[profiles]]", ProfileSection),
        ("[profiles.params] entries", ParamSection),
    ):
        out += [f"### `{table}`", "", (model.__doc__ or "").strip(), "", *_table(model), ""]
    out += ["## Gateway configuration (`fleetwatch gateway --config`)", ""]
    for table, model in (("[router]", RouterSection), ("[recovery]", RecoverySection)):
        out += [f"### `{table}`", "", (model.__doc__ or "").strip(), "", *_table(model), ""]
    return "\n".join(out).rstrip() + "\n"


async def _registry_openapi() -> dict[str, Any]:
    app = create_app(Registry(MemoryStore()), TokenAuth([]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry"
    ) as client:
        document: dict[str, Any] = (await client.get("/openapi.json")).json()
        return document


def _operations(document: dict[str, Any]) -> list[str]:
    rows = ["| method | path | what it does |", "|---|---|---|"]
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            summary = operation.get("summary") or operation.get("description", "").split("\n")[0]
            rows.append(f"| `{method.upper()}` | `{path}` | {summary.replace('|', '/')} |")
    return rows


def http_api_page() -> str:
    """The operations of the registry's and the gateway's OpenAPI documents."""
    registry = asyncio.run(_registry_openapi())
    gateway = openapi_document("0")
    out = [
        "# HTTP API reference",
        "",
        "Generated from the OpenAPI documents (`python -m tests.docs.references`). The full",
        "documents, with every body and answer, are served at `/openapi.json` by `fleetwatch",
        "serve` and by `fleetwatch gateway`.",
        "",
        "## The registry (`fleetwatch serve`)",
        "",
        *_operations(registry),
        "",
        "## The gateway (`fleetwatch gateway`)",
        "",
        *_operations(gateway),
    ]
    return "\n".join(out).rstrip() + "\n"


async def _exported() -> dict[str, dict[str, Any]]:
    """Every series family each server's /metrics page exports: type, help, labels, servers."""
    node = RegistryNode(ServeConfig(), store_url="memory")
    agent = Agent(
        AgentSettings(
            service="llm",
            llm=LlmServerSettings(base_url="http://127.0.0.1:9", kind="llamacpp"),
            registry_url="http://127.0.0.1:9",
        )
    )
    gateway = Gateway(GatewaySettings(service="llm", registry_url="http://127.0.0.1:9"))
    probe_registry = CollectorRegistry()
    HealthMetrics(HealthScheduler(), probe_registry)
    TaskMetrics(probe_registry)
    servers = {
        "serve": node.metrics_registry,
        "agent": agent.metrics_registry,
        "gateway": gateway.metrics_registry,
        "check --serve": probe_registry,
    }
    families: dict[str, dict[str, Any]] = {}
    for server, registry in servers.items():
        for collector in list(registry._collector_to_names):
            labels = tuple(getattr(collector, "_labelnames", ()))
            for family in collector.collect():
                name = family.name + ("_total" if family.type == "counter" else "")
                entry = families.setdefault(
                    name,
                    {
                        "type": family.type,
                        "help": family.documentation,
                        "labels": set(),
                        "servers": [],
                    },
                )
                declared = labels or tuple(getattr(family, "_labelnames", ()))
                entry["labels"].update(declared or {k for s in family.samples for k in s.labels})
                if server not in entry["servers"]:
                    entry["servers"].append(server)
    await gateway.aclose()
    return families


def metrics_page() -> str:
    """Every series the four servers export, from their metric registries."""
    families = asyncio.run(_exported())
    out = [
        "# Metrics reference",
        "",
        "Generated from the metric registries of `fleetwatch serve`, `fleetwatch agent`,",
        "`fleetwatch gateway` and `fleetwatch check --serve` (`python -m tests.docs.references`);",
        "a test fails when a server exports a series this page does not list, or the other way.",
        "Every page passes `promtool check metrics` in the tests.",
        "",
        "| series | type | labels | servers | meaning |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(families):
        entry = families[name]
        labels = ", ".join(f"`{label}`" for label in sorted(entry["labels"])) or "-"
        servers = ", ".join(f"`{server}`" for server in entry["servers"])
        meaning = str(entry["help"]).replace("|", "/")
        out.append(f"| `{name}` | {entry['type']} | {labels} | {servers} | {meaning} |")
    return "\n".join(out) + "\n"


PAGES = {
    "cli.md": cli_page,
    "configuration.md": configuration_page,
    "http-api.md": http_api_page,
    "metrics.md": metrics_page,
}


if __name__ == "__main__":
    for name, build in PAGES.items():
        (REFERENCE / name).write_text(build())
        print(f"wrote docs/reference/{name}")
