"""This machine as the one host of its rollouts: its launch profiles and its host settings.

A local rollout's command line (``--launch``) becomes a launch profile of this machine, named
by a digest of what it runs, and is kept in ``LOG_DIR/host/profiles.json``. The controller's
orders name the profile, never the command: an undo to an earlier revision runs the command
this machine recorded for it, and nothing read from the registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from fleetwatch.hosts._daemon import HostSettings
from fleetwatch.hosts._profiles import LaunchProfile
from fleetwatch.rollout._plan import RolloutSettings

#: The host label a local rollout places its instances by (this machine's host id).
LOCAL_LABEL = "fleetwatch.local-host"
#: Heartbeats of the local host, while a rollout runs (it lapses after the rollout ends).
LOCAL_TTL_S = 10.0
#: Slots of the local host: a machine's own rollouts are bounded by surge, not by slots.
LOCAL_SLOTS = 256
ADDRESS = "127.0.0.1"


def profile_name(settings: RolloutSettings) -> str:
    """``local-<digest>`` of what an instance runs: the command, kind, model, agent options."""
    what = json.dumps(
        [settings.launch, settings.kind, settings.model, list(settings.agent_args)],
        sort_keys=True,
    )
    return f"local-{hashlib.sha256(what.encode()).hexdigest()[:12]}"


class MachineProfiles:
    """The launch profiles this machine's rollouts recorded (a JSON file, replaced whole)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "profiles.json"

    def _raw(self) -> dict[str, dict[str, Any]]:
        try:
            raw: dict[str, dict[str, Any]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return raw

    def load(self) -> dict[str, LaunchProfile]:
        return {name: _profile(name, data) for name, data in self._raw().items()}

    def add(self, settings: RolloutSettings) -> LaunchProfile:
        """Record the profile of ``settings``' launch command; the profile."""
        assert settings.launch is not None
        name = profile_name(settings)
        known = self._raw()
        known[name] = {
            "launch": settings.launch,
            "kind": settings.kind,
            "model": settings.model,
            "agent_args": list(settings.agent_args),
            "ready_timeout": settings.ready_timeout,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a rollout killed mid-write leaves the old file whole.
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False) as out:
            json.dump(known, out, indent=2, sort_keys=True)
        os.replace(out.name, self.path)
        return _profile(name, known[name])


def _profile(name: str, data: dict[str, Any]) -> LaunchProfile:
    return LaunchProfile(
        name=name,
        command=tuple(shlex.split(data["launch"])),
        kind=data.get("kind", "openai"),
        model=data.get("model"),
        agent_args=tuple(data.get("agent_args", ())),
        ready_timeout=float(data.get("ready_timeout", 120.0)),
    )


def host_settings(settings: RolloutSettings, profiles: dict[str, LaunchProfile]) -> HostSettings:
    """This machine as a host: on loopback, labelled with its own id, its profiles."""
    return HostSettings(
        host_id=settings.host_id,
        address=ADDRESS,
        registry_url=settings.registry_url,
        token=settings.token,
        state_dir=state_dir(settings),
        profiles=profiles,
        labels={LOCAL_LABEL: settings.host_id},
        capacity=LOCAL_SLOTS,
        ttl=LOCAL_TTL_S,
    )


def state_dir(settings: RolloutSettings) -> Path:
    return settings.log_dir / "host"
