"""Hostile configuration: whatever a file or an environment holds, the loaders answer with a
ConfigError (naming what was wrong) or a valid configuration, never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.config import load_config, parse_config
from fleetwatch.config._registry import load_serve_config
from fleetwatch.errors import ConfigError

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
KEYS = st.sampled_from(
    ["name", "type", "url", "interval", "timeout", "critical", "groups", "port", "host", "rise",
     "fall", "weight", "model", "prompt", "max_tokens", "dsn", "path", "headers", "x"]
)  # fmt: skip
TYPES = st.sampled_from(["http", "tcp", "redis", "postgres", "system", "llm", "gpu", "kafka", ""])
CHECK = st.dictionaries(KEYS, SCALARS | st.lists(SCALARS, max_size=3), max_size=8).flatmap(
    lambda table: TYPES.map(lambda kind: {**table, "type": kind})
)
DOCUMENT = st.fixed_dictionaries(
    {"checks": st.lists(CHECK, max_size=4)},
    optional={"service": st.dictionaries(KEYS, SCALARS, max_size=3), "junk": SCALARS},
)


@settings(max_examples=300, deadline=None)
@given(DOCUMENT, st.dictionaries(st.text(max_size=30), st.text(max_size=20), max_size=4))
def test_any_document_is_a_config_or_a_config_error(
    document: dict[str, Any], environ: dict[str, str]
) -> None:
    """Random tables and env overrides: a HealthConfig or a ConfigError naming its source."""
    env = {f"FLEETWATCH_CHECKS__{k}": v for k, v in environ.items()}
    _assert_ok_or_names(_outcome(lambda: parse_config(document, environ=env)), "<config>")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_file_text_is_a_config_or_a_config_error(text: str) -> None:
    """Arbitrary text in a checks or serve file: only a ConfigError naming the file escapes."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        for load in (lambda p: load_config(p, environ={}), load_serve_config):
            _assert_ok_or_names(_outcome(lambda load=load: load(path)), str(path))


def _outcome(call: Any) -> str:
    """ "ok", or the ConfigError's message; any other exception fails the test."""
    try:
        call()
    except ConfigError as exc:
        return str(exc)
    return "ok"


def _assert_ok_or_names(out: str, source: str) -> None:
    """A valid configuration, or a ConfigError naming ``source`` and then what was wrong."""
    if out != "ok":
        assert out.startswith(f"{source}: "), out
        assert out.removeprefix(f"{source}: ").strip(), out


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """Latin-1 bytes in a config file: a ConfigError saying so, not a UnicodeDecodeError."""
    path = tmp_path / "f.toml"
    path.write_bytes(b'[[checks]]\nname = "caf\xe9"\n')
    assert "not UTF-8 text" in _outcome(lambda: load_config(path, environ={}))
    assert "not UTF-8 text" in _outcome(lambda: load_serve_config(path))
