"""Clients of the gateway: ``rest`` (httpx, the REST API), ``rpc`` (grpcio, the gRPC API) and ``spotter detect``.
Nothing here imports TensorFlow; ``rpc`` imports neither httpx nor FastAPI, so import the module you need."""
