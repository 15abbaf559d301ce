"""The heartbeat protocol, written once: register, renew the lease, and read the answers.

A ``404`` means the registry lost the instance (it restarted without persistence): register
again, and resend the verdict that heartbeat carried. A ``410`` means an operator removed the
instance: stop, and never register again. The agent and ``registration()`` both use it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fleetwatch.discovery._registry_client import RegistryClient
from fleetwatch.errors import InstanceGone, InstanceNotFound
from fleetwatch.registry._model import Instance, InstanceStatus, Registration

log = logging.getLogger("fleetwatch.discovery")

#: A verdict's output is cut to this many characters (the API refuses longer ones).
MAX_OUTPUT = 1000


class Heartbeater:
    """One instance's lease with the registry.

    ``registration`` is called at every (re-)registration, so what is registered is always
    current (the agent's port, its metadata). It gives a :class:`Registration`, or a raw body
    that the registry's API validates (``registration(**body)`` passes its caller's keywords
    on, so a misspelt field is refused by the API, not dropped). Counters are for endpoints,
    logs and tests.
    """

    def __init__(
        self,
        client: RegistryClient,
        service: str,
        instance_id: str,
        registration: Callable[[], Registration | Mapping[str, Any]],
    ) -> None:
        self.client = client
        self.service = service
        self.instance_id = instance_id
        self._registration = registration
        self.registrations = 0
        self.heartbeats = 0
        #: An operator removed the instance (410): nothing more is sent.
        self.gone = False
        self.gone_reason = ""

    async def register(self) -> Instance:
        """Register (or update) the instance."""
        instance = await self.client.register(self.service, self.instance_id, self._registration())
        self.registrations += 1
        return instance

    async def beat(self, status: InstanceStatus | None = None, output: str = "") -> Instance | None:
        """Renew the lease, with the instance's own verdict when ``status`` is given.

        Returns the instance as the registry has it, or None once it is gone (410), or after a
        re-registration that carried no verdict. Other registry errors propagate: the caller
        retries on its next beat.
        """
        if self.gone:
            return None
        output = output[:MAX_OUTPUT]
        try:
            try:
                instance: Instance | None = await self.client.heartbeat(
                    self.service, self.instance_id, status=status, output=output
                )
            except InstanceNotFound:
                instance = await self._again(status, output)
            if instance is None:  # registered again, with no verdict to resend
                return None
        except InstanceGone as exc:  # from the heartbeat, or from registering again
            log.warning(
                "discovery.removed_by_operator %s/%s: %s", self.service, self.instance_id, exc
            )
            self.gone, self.gone_reason = True, str(exc)
            return None
        self.heartbeats += 1
        return instance

    async def _again(self, status: InstanceStatus | None, output: str) -> Instance | None:
        """After a 404: register again, then resend the verdict if there was one."""
        log.warning(
            "discovery.reregister %s/%s: the registry lost us", self.service, self.instance_id
        )
        await self.register()
        if status is None:
            return None
        return await self.client.heartbeat(
            self.service, self.instance_id, status=status, output=output
        )
