"""The gateway's [router] file and its command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.cli._gateway import parse_weights, router_settings
from fleetwatch.config._router import load_router, parse_router
from fleetwatch.errors import ConfigError
from fleetwatch.routing import RouterSettings


def test_file_sets_the_router_and_options_override_it(tmp_path: Path) -> None:
    """Every field is read; --strategy, --session-header and --scorer win over the file."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[router]\nstrategy = "session"\nsession_header = "x-chat"\ncache_tokens = 1024\n'
        "block_chars = 128\nmax_imbalance = 2\nload_factor = 1.5\n"
        "[router.weights]\nsession = 2\nload = 1\n"
    )
    read = load_router(path)
    assert read == RouterSettings(
        strategy="session",
        session_header="x-chat",
        cache_tokens=1024,
        block_chars=128,
        max_imbalance=2,
        load_factor=1.5,
        weights={"session": 2, "load": 1},
    )
    merged = router_settings(path, "prefix", "x-session-id", ["load=0.5"], None)
    assert (merged.strategy, merged.session_header) == ("prefix", "x-session-id")
    assert merged.weights == {"session": 2, "load": 0.5}
    assert merged.cache_tokens == 1024


def test_defaults_without_a_file() -> None:
    """No file, no options: the prefix strategy with its preset weights."""
    assert router_settings(None, None, None, None, None) == RouterSettings()
    assert RouterSettings().strategy == "prefix"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[router]\nstrategy = "fastest"\n', "field 'strategy'"),
        ("[router.weights]\ncache = 1\n", "unknown scorer 'cache'; known: load"),
        ("[router.weights]\nload = -1\n", "a weight must be a finite number >= 0"),
        ('[router]\nstrategy = "round-robin"\n[router.weights]\nload = 1\n', "ignores scores"),
        ("[router]\ncache_tokens = 0\n", "field 'cache_tokens'"),
        ("[router]\ncolour = 1\n", "unknown field 'colour'; allowed fields: block_chars"),
        ("[gateway]\nport = 1\n", "unknown table 'gateway'"),
        ("[router\n", "not valid TOML"),
    ],
)
def test_bad_files_name_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    """Each mistake is a ConfigError naming the file and the field or table."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_router(path)
    assert str(path) in str(caught.value)


def test_scorer_options_parse_and_refuse_bad_ones() -> None:
    """NAME=WEIGHT pairs parse; anything else names the expected form."""
    assert parse_weights(["prefix=2", "load=0.5"]) == {"prefix": 2.0, "load": 0.5}
    with pytest.raises(ConfigError, match="write NAME=WEIGHT"):
        parse_weights(["prefix"])
    with pytest.raises(ConfigError, match="write NAME=WEIGHT"):
        parse_weights(["prefix=lots"])
    with pytest.raises(ValueError, match="unknown scorer"):
        router_settings(None, None, None, ["speed=1"], None)


def test_an_empty_file_is_the_defaults() -> None:
    """A file without [router] routes with the defaults."""
    assert parse_router({}) == RouterSettings()
