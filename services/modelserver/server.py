"""Wiring: the repository (polling and loading), the gRPC server and the REST server, in one process.

gRPC runs on its own thread pool, REST on uvicorn in a thread of its own; the main thread waits for SIGTERM or
SIGINT and then closes both servers (in-flight calls get a short grace period) and stops polling.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

import grpc
import uvicorn

from services.modelserver.batching import read_batching_parameters
from services.modelserver.config import ConfiguredModels, ModelServerSettings, ModelSource, model_sources
from services.modelserver.grpc_service import create_grpc_server
from services.modelserver.repository import ModelRepository
from services.modelserver.rest import create_app
from services.modelserver.servable import Servable
from services.modelserver.warmup import load_servable

log = logging.getLogger(__name__)

GRACE_SECONDS = 5.0


def build_repository(
    settings: ModelServerSettings, sources: Callable[[], list[ModelSource]] | None = None
) -> ModelRepository[Servable]:
    """The repository for ``settings`` (``sources`` defaults to :func:`model_sources`).

    Raises:
        ConfigError: the batching parameters file is invalid.
    """
    batching = None
    if settings.modelserver_enable_batching:
        params = read_batching_parameters(settings.modelserver_batching_parameters_file)
        log.info("Server-side batching on: %s", params)
        batching = (params, threading.BoundedSemaphore(params.num_batch_threads))
    return ModelRepository(
        sources or model_sources(settings),
        functools.partial(
            load_servable,
            warmup_iterations=settings.modelserver_warmup_iterations,
            strict_tfs_loading=settings.modelserver_strict_tfs_loading,
            batching=batching,
        ),
        poll_seconds=settings.modelserver_poll_seconds,
        load_threads=settings.modelserver_load_threads,
    )


class ModelServer:
    """The running model server: start() returns once both ports listen; stop() closes everything."""

    def __init__(self, settings: ModelServerSettings, sources: Callable[[], list[ModelSource]] | None = None) -> None:
        self.settings = settings
        sources = sources or model_sources(settings)
        # A models.config can be replaced by HandleReloadConfigRequest; folder discovery can't.
        self.configured = sources if isinstance(sources, ConfiguredModels) else None
        self.repository = build_repository(settings, sources)
        self._grpc: grpc.Server | None = None
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()  # whatever did start (the poll thread, the gRPC server) must not outlive a failed start
            raise

    def _start(self) -> None:
        s = self.settings
        self.repository.start()
        self._grpc = create_grpc_server(
            self.repository,
            host=s.modelserver_host,
            port=s.modelserver_grpc_port,
            workers=s.modelserver_grpc_workers,
            max_message_bytes=s.modelserver_grpc_max_message_bytes,
            configured=self.configured,
        )
        self._grpc.start()
        config = uvicorn.Config(
            create_app(self.repository),
            host=s.modelserver_host,
            port=s.modelserver_rest_port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self._http = uvicorn.Server(config)
        self._http_thread = threading.Thread(target=self._http.run, name="rest", daemon=True)
        self._http_thread.start()
        while not self._http.started:
            if not self._http_thread.is_alive():
                raise OSError(f"the REST server could not start on {s.modelserver_host}:{s.modelserver_rest_port}")
            time.sleep(0.05)
        log.info(
            "Model server listening: gRPC %s:%d, REST %s:%d",
            s.modelserver_host,
            s.modelserver_grpc_port,
            s.modelserver_host,
            s.modelserver_rest_port,
        )

    def stop(self) -> None:
        if self._http is not None:
            self._http.should_exit = True
        if self._grpc is not None:
            self._grpc.stop(GRACE_SECONDS).wait()
        if self._http_thread is not None:
            self._http_thread.join(GRACE_SECONDS + 1)
        self.repository.stop()
        log.info("Model server stopped")


def serve(settings: ModelServerSettings, sources: Callable[[], list[ModelSource]] | None = None) -> None:
    """Run the model server until SIGTERM or SIGINT."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("Received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = ModelServer(settings, sources)
        server.start()
        try:
            stop.wait()
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
