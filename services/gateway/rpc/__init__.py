"""The gateway's gRPC API (``spotter.v1``): a thin transport over the same dataplane and batcher as REST.

- ``server``: the ``grpc.aio`` server, run inside the FastAPI app's lifespan (health checking, reflection);
- ``service``: the ``DetectionService`` methods, a few lines each over :class:`~services.gateway.dataplane.Dataplane`;
- ``convert``: protobuf messages to and from the dataplane's dataclasses;
- ``interceptors``: request id, API key, deadline, metrics and the one error mapping, for every method;
- ``health``: ``grpc.health.v1`` statuses kept in step with the model catalog;
- ``status``: :mod:`services.errors` classes <-> gRPC status codes, shared with the client (``services.client.rpc``).

This package's ``__init__`` and ``status`` import nothing heavy: the client imports ``status``.
"""
