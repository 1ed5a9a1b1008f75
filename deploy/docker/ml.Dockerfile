# syntax=docker/dockerfile:1
# The TensorFlow images: the RQ worker (training, evaluation, export) and the embedded model server (a TensorFlow
# Serving stand-in for hosts without TFS). One install, two targets that differ only in their command.
#
#   docker build -f deploy/docker/ml.Dockerfile --target worker      -t spotter-worker .
#   docker build -f deploy/docker/ml.Dockerfile --target worker      -t spotter-worker-gpu --build-arg TF_VARIANT=gpu .
#   docker build -f deploy/docker/ml.Dockerfile --target modelserver -t spotter-modelserver .
#
# TF_VARIANT=gpu installs tensorflow[and-cuda]: the same pinned TensorFlow plus NVIDIA's CUDA and cuDNN wheels, so the
# image needs only the host's NVIDIA driver (through the NVIDIA container toolkit or the Kubernetes device plugin),
# not a CUDA base image. Production serving uses the official TensorFlow Serving image instead of `modelserver`.

# --- builder: generate the gRPC stubs and build the wheel (as in gateway.Dockerfile) ------------------------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -m pip install -c requirements/constraints.txt grpcio-tools
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY scripts/gen-protos.sh scripts/gen-protos.sh
COPY services/ services/
RUN bash scripts/gen-protos.sh python \
 && python -m pip wheel --no-deps --wheel-dir /wheels .

# --- ml: the project with its [ml] extra -----------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS ml
ARG TF_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp KERAS_HOME=/tmp/keras MPLCONFIGDIR=/tmp/matplotlib TF_CPP_MIN_LOG_LEVEL=1 \
    SPOTTER_LOG_JSON=true \
    SPOTTER_DATA_DIR=/data SPOTTER_MODEL_ROOT=/models
RUN groupadd --system --gid 10001 spotter \
 && useradd --system --uid 10001 --gid spotter --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin spotter \
 && mkdir -p /data /models \
 && chown spotter:spotter /data /models
COPY --from=builder /wheels /wheels
COPY requirements/constraints.txt /tmp/constraints.txt
RUN set -eu; \
    wheel=$(ls /wheels/spotter-*.whl); \
    case "$TF_VARIANT" in \
      cpu) extra="" ;; \
      gpu) extra="tensorflow[and-cuda]" ;; \
      *) echo "TF_VARIANT must be cpu or gpu, not $TF_VARIANT" >&2; exit 1 ;; \
    esac; \
    python -m pip install --compile -c /tmp/constraints.txt "${wheel}[ml]" $extra; \
    rm -rf /wheels /tmp/constraints.txt
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["spotter"]

# --- worker: `spotter worker` (RQ); Prometheus metrics on 9100 -------------------------------------------------
FROM ml AS worker
# The demo model, for compose's model-seed to copy into an empty model volume.
COPY --chown=10001:10001 models/demo/ /opt/spotter/demo/
EXPOSE 9100
# For plain `docker run`; compose and Kubernetes declare their own checks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=3)"]
CMD ["worker"]

# --- modelserver: `spotter modelserver` (TFS API: gRPC 8500, REST 8501, metrics on 8501) --------------------------
FROM ml AS modelserver
ENV SPOTTER_MODELSERVER_GRPC_PORT=8500 SPOTTER_MODELSERVER_REST_PORT=8501
EXPOSE 8500 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/monitoring/prometheus/metrics', timeout=3)"]
CMD ["modelserver"]
