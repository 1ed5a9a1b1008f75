"""The gateway's FastAPI application: wiring only.

The lifespan builds the TFS client, the model catalog, the batcher and the dataplane, puts them on
``app.state`` (routes reach them through ``services.gateway.api.deps``), and closes them on shutdown. When the gRPC
API is present (``services.gateway.rpc.server.lifespan(app)``, an async context manager), it runs inside this
lifespan on the same event loop and the same dataplane and batcher, so gRPC and REST requests share batches.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI

from services.gateway.api.errors import install_error_handlers
from services.gateway.api.middleware import BodyReadTimeout, RequestContextMiddleware, track_inflight
from services.gateway.api.routes import datasets, health, jobs, models, shadow, ui, warmup
from services.gateway.batcher import Batcher
from services.gateway.catalog import ModelCatalog
from services.gateway.config import GatewaySettings
from services.gateway.dataplane import Dataplane, tfs_batch_predictor
from services.gateway.rpc import server as rpc_server
from services.gateway.tfs import TfsClient
from services.gateway.traffic_sample import TrafficSampler

logger = logging.getLogger(__name__)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    tfs = TfsClient(
        settings.tfs_grpc,
        deadline=settings.tfs_deadline_seconds,
        max_message_bytes=settings.tfs_max_message_bytes,
        retry_after=settings.retry_after_seconds,
    )
    catalog = ModelCatalog(tfs, settings)
    batcher = Batcher(
        tfs_batch_predictor(tfs),
        max_batch_size=settings.max_batch_size,
        max_batch_delay=settings.max_batch_delay_seconds,
        max_queue_size=settings.max_queue_size,
        max_inflight_batches=settings.max_inflight_batches,
        max_queue_wait=settings.queue_deadline_seconds,
        work_conserving=settings.batch_work_conserving,
        adaptive=settings.batch_adaptive,
        retry_after=settings.retry_after_seconds,
    )
    app.state.tfs = tfs
    app.state.catalog = catalog
    app.state.batcher = batcher
    sampler = TrafficSampler.from_settings(settings)  # None unless SPOTTER_WARMUP_SAMPLES is set
    app.state.traffic_sampler = sampler
    app.state.dataplane = Dataplane(settings, catalog, batcher, traffic_sampler=sampler)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(tfs.close)
        if sampler is not None:
            sampler.start()
            stack.push_async_callback(sampler.close)
        stack.push_async_callback(batcher.close)
        stack.push_async_callback(catalog.close)
        stack.push_async_callback(app.state.dataplane.shadows.close)  # before the batcher its runs submit to
        await catalog.start()
        await stack.enter_async_context(rpc_server.lifespan(app))
        logger.info("gateway started: model server %s, models %s", settings.tfs_grpc, catalog.names())
        yield


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The gateway app, configured by ``settings`` (read from the environment when not given)."""
    settings = settings or GatewaySettings()
    app = FastAPI(
        title="Spotter",
        summary="Object detection and classification over TensorFlow Serving.",
        version="1.0",
        lifespan=_lifespan,
        dependencies=[Depends(track_inflight)],
        # `/v1/models/` is a 404 in our error shape, not a 307 to a Location built from the client's Host header.
        redirect_slashes=False,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for routes in (health, models, datasets, jobs, ui, warmup, shadow):
        app.include_router(routes.router)
    app.add_middleware(
        BodyReadTimeout,
        idle_seconds=settings.http_body_idle_timeout_seconds,
        min_bytes_per_second=settings.http_body_min_bytes_per_second,
    )
    app.add_middleware(RequestContextMiddleware)  # outermost: its metrics see every status, the 408s too
    return app
