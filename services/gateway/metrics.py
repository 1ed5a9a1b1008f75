"""The gateway's Prometheus metrics (names and labels as in docs/architecture.md; histograms, never summaries).

They live in prometheus-client's default registry, shared by every transport in the process, so REST and gRPC
requests land in the same series. A ``model`` label only ever holds a model the catalog knows: a name a client made
up is counted as ``model="unknown"``, so clients cannot grow the number of series.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from services.errors import SpotterError

UNKNOWN_MODEL = "unknown"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUEST_DURATION = Histogram(
    "spotter_request_duration_seconds",
    "Time to answer a request, by endpoint, model, version and status",
    ["endpoint", "model", "version", "status"],
    buckets=_LATENCY_BUCKETS,
)
QUEUE_SECONDS = Histogram(
    "spotter_queue_seconds",
    "Time an image waited in the batch queue before its batch left",
    ["model", "version"],
    # Up to the request timeout (30 s by default): a queue that backs up must show in the top buckets.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SIZE = Histogram(
    "spotter_batch_size",
    "Images per Predict call sent to the model server",
    ["model", "version"],
    # One bucket per size up to 4, then half-steps up to 64 (max_batch_size is 16 by default, TFS batches to 32).
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
BATCH_DISPATCHES = Counter(
    "spotter_batch_dispatches_total",
    "Batches sent, by why they left: full, idle (a Predict slot was free), waited (it waited for a slot)",
    ["model", "version", "reason"],
)
UPSTREAM_SECONDS = Histogram(
    "spotter_upstream_seconds",
    "Duration of model-server calls, by method",
    ["model", "version", "method"],
    buckets=_LATENCY_BUCKETS,
)
DECODE_SECONDS = Histogram(
    "spotter_decode_seconds",
    "Time to decode and validate an uploaded image",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DETECTIONS_PER_IMAGE = Histogram(
    "spotter_detections_per_image",
    "Detections answered per image",
    ["model", "version"],
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
DETECTION_SCORE = Histogram(
    "spotter_detection_score",
    "Scores of the detections answered, by label",
    ["model", "version", "label"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
INFLIGHT_REQUESTS = Gauge("spotter_inflight_requests", "Requests being served, by endpoint", ["endpoint"])
QUEUE_DEPTH = Gauge("spotter_queue_depth", "Images waiting in the batch queue", ["model", "version"])
QUEUE_CAPACITY = Gauge("spotter_queue_capacity", "Images the batch queue holds before it answers 503")
REJECTED_REQUESTS = Counter(
    "spotter_rejected_requests_total",
    "Requests answered with an error, by reason (the error code)",
    ["model", "reason"],
)
ADMITTED_REQUESTS = Gauge(
    "spotter_admitted_requests", "Inference requests holding an admission ticket (read, decoded, queued or predicted)"
)
ADMISSION_CAPACITY = Gauge("spotter_admission_capacity", "Inference requests admitted at once before 503")
SHED_REASONS = ("admission", "queue_full", "deadline", "upstream")
"""Why an inference request was refused for overload: at admission (before its body was read), by a full batch
queue, by the queue deadline, or because the model server itself answered RESOURCE_EXHAUSTED."""
SHED_REQUESTS = Counter(
    "spotter_shed_requests_total",
    "Inference requests refused for overload (503), by reason: admission, queue_full, deadline, upstream",
    ["reason"],
)
for _reason in SHED_REASONS:
    SHED_REQUESTS.labels(_reason)  # every reason shows from the start, at 0
TILED_IMAGES = Counter("spotter_tiled_images_total", "Images cut into tiles", ["model"])
MODEL_UP = Gauge("spotter_model_up", "1 when the model has an AVAILABLE version", ["model"])
MODEL_SERVER_UP = Gauge("spotter_model_server_up", "1 when the model server answered the last status poll")
PROTOCOL_REFUSALS = Counter(
    "spotter_protocol_refusals_total",
    "Connections answered by the HTTP server before the app (not valid HTTP, headers too slow or too big), by status",
    ["status", "code"],
)
for _status, _code in (
    ("400", "invalid_input"),
    ("408", "request_timeout"),
    ("431", "request_header_fields_too_large"),
):
    PROTOCOL_REFUSALS.labels(_status, _code)  # every refusal the server makes, at 0 from the start

_known_models: set[str] = set()


def set_known_models(names: Iterable[str]) -> None:
    """Tell the metrics which model names exist (the catalog calls this after each refresh)."""
    _known_models.update(names)


def model_label(name: str | None) -> str:
    """The ``model`` label for ``name``: itself if the model exists, ``unknown`` otherwise, ``""`` for none."""
    if not name:
        return ""
    return name if name in _known_models else UNKNOWN_MODEL


def record_rejection(model: str | None, exc: SpotterError) -> None:
    """Count a request answered with one of our errors (every transport calls this once per failed request)."""
    REJECTED_REQUESTS.labels(model_label(model) or UNKNOWN_MODEL, exc.code).inc()


# -- shadow canaries (services/gateway/shadow.py) ----------------------------------------------------------------------

SHADOW_AGREEMENT = Histogram(
    "spotter_shadow_agreement",
    "Agreement (F1 of matched boxes, 0 for a failed run) of a shadow version's answer with the served answer",
    ["model", "version"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
)
SHADOW_SECONDS = Histogram(
    "spotter_shadow_seconds",
    "Inference time of a shadow run (its views through the batcher and the model server)",
    ["model", "version"],
    buckets=_LATENCY_BUCKETS,
)
SHADOW_FAILURES = Counter(
    "spotter_shadow_failures_total",
    "Shadow runs that failed or timed out (counted as disagreement, never shown to the client)",
    ["model", "version"],
)
SHADOW_DROP_REASONS = ("load", "concurrency", "queue", "busy")
"""Why a sampled image was not run through the shadow: the gateway was busy (admission), enough shadow runs were
already in flight, images were waiting in the batch queue, or a version's worth of Predict calls was in flight (the
model server had no time to spare)."""
SHADOW_DROPPED = Counter(
    "spotter_shadow_dropped_total",
    "Sampled images not run through the shadow version, shed to keep served requests fast, by reason",
    ["model", "version", "reason"],
)


# Warmup from real traffic (services/gateway/traffic_sample.py).
TRAFFIC_SAMPLE_OUTCOMES = ("kept", "passed", "dropped", "failed")
"""What became of a request offered to its model's traffic sample: kept in a slot, counted but not kept (Algorithm R
passed it over), dropped unseen (the sampler's queue was full or Redis was failing), failed (a Redis error)."""
TRAFFIC_SAMPLES = Counter(
    "spotter_traffic_samples_total",
    "Requests offered to the warmup traffic sample, by outcome: kept, passed, dropped, failed",
    ["model", "outcome"],
)


# Adaptive batch sizing (services/gateway/batchsizer.py).
BATCH_LIMIT = Gauge(
    "spotter_batch_limit",
    "Most images the next batch of a model version may carry, as learned from the upstream's per-image time",
    ["model", "version"],
)
DECODES = Counter(
    "spotter_decodes_total",
    "Images decoded, by where: loop (small, while nothing else was served: no thread hop) or thread",
    ["model", "where"],
)
