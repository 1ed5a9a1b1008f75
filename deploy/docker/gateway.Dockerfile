# syntax=docker/dockerfile:1
# The gateway image: FastAPI + gRPC gateway, the CLI and the client. No TensorFlow: the runtime stage installs the
# project's base dependencies only (pyproject.toml [project.dependencies], pinned by requirements/constraints.txt).
#
#   docker build -f deploy/docker/gateway.Dockerfile -t spotter-gateway .      (context: the repository root)
#
# tests/deploy/test_images.py reads this file: it resolves what the runtime stage's `pip install` would install and
# fails if TensorFlow, Keras or tensorflow-serving-api is among it.

# --- builder: generate the gRPC stubs (git-ignored, so never in the context) and build the wheel -----------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
# grpcio-tools (from the dev extra) only runs protoc here; it never reaches the runtime stage.
RUN python -m pip install -c requirements/constraints.txt grpcio-tools
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY scripts/gen-protos.sh scripts/gen-protos.sh
COPY services/ services/
RUN bash scripts/gen-protos.sh python \
 && python -m pip wheel --no-deps --wheel-dir /wheels .

# --- runtime ------------------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    SPOTTER_LOG_JSON=true \
    SPOTTER_HTTP_PORT=8080 SPOTTER_GRPC_PORT=50051 \
    SPOTTER_DATA_DIR=/data SPOTTER_MODEL_ROOT=/models
RUN groupadd --system --gid 10001 spotter \
 && useradd --system --uid 10001 --gid spotter --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin spotter \
 && mkdir -p /data \
 && chown spotter:spotter /data
COPY --from=builder /wheels /wheels
COPY requirements/constraints.txt /tmp/constraints.txt
# The base install only: no [ml] extra, so no TensorFlow. Bytecode is compiled now because the root filesystem is
# read-only at run time.
RUN python -m pip install --compile -c /tmp/constraints.txt /wheels/spotter-*.whl \
 && rm -rf /wheels /tmp/constraints.txt
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 50051
# For plain `docker run`; compose and Kubernetes declare their own checks (/readyz, /healthz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=3)"]
ENTRYPOINT ["spotter"]
CMD ["gateway"]
