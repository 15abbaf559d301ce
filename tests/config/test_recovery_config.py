"""The gateway file's [recovery] table and its command-line overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.cli._gateway import recovery_settings
from fleetwatch.config._recovery import parse_recovery
from fleetwatch.config._router import load_router
from fleetwatch.errors import ConfigError
from fleetwatch.gateway.recovery import RecoverySettings


def test_the_file_sets_recovery_and_options_override_it(tmp_path: Path) -> None:
    """Every field is read (durations as text too); --no-recovery and --inter-token-timeout
    win over the file; the [router] table beside it still reads."""
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[router]\nstrategy = "prefix"\n'
        '[recovery]\nattempts = 3\ninter_token_timeout = "500ms"\n'
        'sampled_routes = ["/v1/chat/completions"]\n'
    )
    assert recovery_settings(path, None, None) == RecoverySettings(
        attempts=3,
        inter_token_timeout=0.5,
        sampled_routes=frozenset({"/v1/chat/completions"}),
    )
    merged = recovery_settings(path, False, "2s")
    assert (merged.enabled, merged.inter_token_timeout, merged.attempts) == (False, 2.0, 3)
    assert load_router(path).strategy == "prefix"
    assert recovery_settings(None, None, None) == RecoverySettings()


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({"sampled_routes": ["/v1/embeddings"]}, "allowed: /v1/chat/completions"),
        ({"attempts": 7}, "attempts"),
        ({"inter_token_timeout": "soon"}, "inter_token_timeout"),
        ({"retry": True}, "retry"),
    ],
)
def test_bad_recovery_tables_name_the_field(table: dict[str, object], names: str) -> None:
    """An unknown route, attempts over 5, a bad duration or an unknown key: a ConfigError
    naming what is wrong."""
    with pytest.raises(ConfigError, match=names):
        parse_recovery({"recovery": table}, "gateway.toml")
