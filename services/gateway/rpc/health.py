"""Standard gRPC health checking (``grpc.health.v1``), in step with the model catalog.

The overall status (service ``""``) and each served service's are SERVING when the model server answered the
catalog's last refresh and some model has an AVAILABLE version, NOT_SERVING otherwise: what ``GET /readyz`` says.
They follow the catalog's background refreshes (a new ``last_refresh`` is noticed within a fraction of the refresh
period) rather than polling the model server per health call, so a load balancer's frequent checks cost nothing;
``Watch`` streams each change. On shutdown every service turns NOT_SERVING for the grace period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from grpc_health.v1 import health, health_pb2

from services import errors
from services.gateway.catalog import ModelCatalog

logger = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Keeps a ``grpc.health.v1`` servicer's statuses true to the catalog.

    Args:
        catalog: The gateway's model catalog (refreshed in the background by itself).
        services: Full names of the services to report besides the overall ``""``.
        check_seconds: How often to look whether the catalog has refreshed (an in-memory check).
    """

    def __init__(self, catalog: ModelCatalog, services: Sequence[str], *, check_seconds: float) -> None:
        self.servicer = health.aio.HealthServicer()
        self._catalog = catalog
        self._services = ("", *services)
        self._check_seconds = check_seconds
        self._task: asyncio.Task[None] | None = None
        self.serving: bool | None = None

    async def start(self) -> None:
        """Report the catalog's current state, then follow its refreshes."""
        seen = self._catalog.last_refresh
        await self.update()
        self._task = asyncio.create_task(self._follow(seen), name="grpc-health")

    async def stop(self) -> None:
        """Stop following; every service answers NOT_SERVING from now on (the server is going away)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.servicer.enter_graceful_shutdown()

    async def update(self) -> bool:
        """Set every service's status from the catalog's state as of its last refresh; whether it is SERVING."""
        serving = self._catalog.model_server_up and await self._any_model_available()
        if serving != self.serving:
            for service in self._services:
                await self.servicer.set(service, SERVING if serving else NOT_SERVING)
            logger.info("gRPC health: %s", "SERVING" if serving else "NOT_SERVING")
            self.serving = serving
        return serving

    async def _any_model_available(self) -> bool:
        # resolve() answers from the catalog's memory for a model with an AVAILABLE version; only a model without
        # one costs a status call, and only until the first model that has one.
        for name in self._catalog.names():
            try:
                await self._catalog.resolve(name)
            except errors.SpotterError:
                continue
            return True
        return False

    async def _follow(self, seen: float) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            if self._catalog.last_refresh == seen:
                continue
            seen = self._catalog.last_refresh
            try:
                await self.update()
            except Exception:  # health must outlive any one failure
                logger.exception("updating the gRPC health status failed")
