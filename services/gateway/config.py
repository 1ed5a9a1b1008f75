"""The gateway's settings: one typed class, read from ``SPOTTER_*`` environment variables at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from services.settings import DatasetSettings
from services.store.traffic_sample import DEFAULT_TTL_SECONDS
from services.vision.tiling import DEFAULT_MAX_TILES, DEFAULT_MERGE_IOU, DEFAULT_OVERLAP

MiB = 1024 * 1024


class GatewaySettings(DatasetSettings):
    """Everything the gateway process is configured with (env prefix ``SPOTTER_``)."""

    # Where it listens.
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_port: int = Field(50051, ge=0, le=65535, description="the gateway's own gRPC API (spotter.v1)")
    grpc_host: str = Field("0.0.0.0", description="address the gRPC API listens on")
    grpc_max_message_bytes: int = Field(
        32 * MiB, ge=64 * 1024, description="largest gRPC message received or sent (an uploaded image is one message)"
    )
    grpc_grace_seconds: float = Field(5.0, ge=0, description="on shutdown, time in-flight gRPC calls get to finish")
    gateway_workers: int = Field(
        1,
        ge=1,
        description="gateway processes sharing the HTTP and gRPC ports (SO_REUSEPORT); each has its own batcher",
    )
    grpc_stream_window: int = Field(
        8, ge=1, description="frames of one DetectStream served at once (they share batches; answers stay in order)"
    )

    # Slow and hostile HTTP clients (services/gateway/httpserver.py, api/middleware.py).
    http_header_timeout_seconds: float = Field(
        10.0, gt=0, description="time a client has to send a request line and headers; then 408 and close"
    )
    http_max_header_bytes: int = Field(64 * 1024, ge=1024, description="largest request line + headers; past it 431")
    http_body_idle_timeout_seconds: float = Field(
        10.0, gt=0, description="longest pause between the bytes of a request body; then 408 and close"
    )
    http_body_min_bytes_per_second: float = Field(
        1024.0,
        ge=0,
        description="a body must arrive at this average rate after the first http_body_idle_timeout_seconds "
        "(0: no rate limit), so a client that trickles bytes cannot hold a request open",
    )
    http_keep_alive_seconds: int = Field(5, ge=1, description="an idle kept-alive connection is closed after this")

    # The model server (TensorFlow Serving or the embedded one).
    tfs_grpc: str = Field("127.0.0.1:8500", description="host:port of the model server's gRPC API")
    tfs_deadline_seconds: float = Field(10.0, gt=0, description="deadline of every model-server call")
    tfs_max_message_bytes: int = Field(256 * MiB, ge=4 * MiB, description="gRPC max send/receive message size")
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="longest a request may wait for its results (queue + model server), then 504"
    )

    # Batching.
    max_batch_size: int = Field(16, ge=1, description="1 turns batching off")
    max_batch_delay_ms: float = Field(
        5.0,
        ge=0,
        description="longest the oldest queued image waits for a batch to fill, an upper bound (work-conserving: "
        "only while every Predict slot is busy)",
    )
    batch_work_conserving: bool = Field(
        True,
        description="send a batch at once while a Predict slot is free; wait for the delay only when all are busy "
        "(false: every partial batch waits the full delay)",
    )
    batch_adaptive: bool = Field(
        True,
        description="learn each model version's batch limit (within max_batch_size) from the model server's "
        "per-image time per batch size: batches grow only while they make it cheaper per image",
    )
    max_queue_size: int = Field(256, ge=1, description="pending images over all models; past it, 503 at once")
    max_inflight_batches: int = Field(2, ge=1, description="Predict calls in flight per (model, version)")
    queue_deadline_ms: float = Field(
        2000.0, gt=0, description="longest an image may wait in the batch queue; past it, 503 rather than served late"
    )
    max_inflight_requests: int | None = Field(
        None,
        ge=1,
        description="inference requests served at once (body read, decoded, queued or predicted); past it, 503 "
        "before the body is read. Default: max_queue_size + max_batch_size * max_inflight_batches",
    )

    # Uploads.
    max_image_bytes: int = Field(20 * MiB, ge=1)
    max_image_pixels: int = Field(50_000_000, ge=1)
    inline_decode_max_pixels: int = Field(
        512 * 512,
        ge=0,
        description="images up to this many pixels are decoded on the event loop while no other request is served "
        "(no thread hop; 0: always in a worker thread)",
    )
    max_concurrent_decodes: int = Field(
        4, ge=1, description="images decoded at once: bounds decode memory to about this x max_image_pixels x 3 bytes"
    )

    # Answers.
    default_min_score: float = Field(0.5, ge=0.0, le=1.0)
    default_max_detections: int = Field(100, ge=1, le=1000)
    default_top_k: int = Field(5, ge=1)

    # Tiling of large images (tile=auto|on|off).
    tile_overlap: float = Field(
        DEFAULT_OVERLAP, ge=0.0, lt=1.0, description="fraction of a tile shared with its neighbour"
    )
    max_tiles: int = Field(
        DEFAULT_MAX_TILES, ge=1, description="most tiles per image (the whole image rides along as one more view)"
    )
    tile_nms_iou: float = Field(
        DEFAULT_MERGE_IOU, gt=0.0, le=1.0, description="IoU above which merged tile boxes are duplicates"
    )
    dynamic_input_size: int = Field(
        640, ge=32, description="canvas size for models whose metadata leaves the input size open (TF OD API exports)"
    )

    # Models.
    label_maps: dict[str, Path] = Field(
        default_factory=dict,
        description="model name -> label_map.pbtxt, for models without a `labels` signature (JSON in the env)",
    )
    model_config_file: Path | None = Field(None, description="TFS models.config: model names and version labels")
    catalog_refresh_seconds: float = Field(2.0, gt=0, description="how often model status is polled")

    # Shadow canaries (services/gateway/shadow.py, docs/rollout.md).
    shadow_label: str = Field(
        "shadow", min_length=1, description="a models.config version label that puts that version in shadow"
    )
    shadow_default_sample_rate: float = Field(
        0.1, ge=0.0, le=1.0, description="share of served detections also run through a shadow, unless given"
    )
    shadow_max_concurrent: int = Field(2, ge=1, description="shadow runs at once; a sample past it is dropped")
    shadow_max_load: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="shadow samples are dropped while more than this share of the admission limit is in use",
    )
    shadow_max_queued: int = Field(
        0,
        ge=0,
        description="shadow samples are dropped while more images than this wait in the batch queue (0: any wait, "
        "which with work-conserving batching means the model server is already busy)",
    )
    shadow_max_inflight_batches: int | None = Field(
        None,
        ge=1,
        description="shadow samples are dropped while this many Predict calls are at the model server "
        "(default: max_inflight_batches, a version's worth of slots)",
    )
    shadow_timeout_seconds: float = Field(5.0, gt=0, description="a shadow run past this counts as a disagreement")
    promote_min_samples: int = Field(20, ge=1, description="compared samples :promote needs (without force)")
    promote_min_agreement: float = Field(
        0.9, ge=0.0, le=1.0, description="mean agreement :promote needs (without force)"
    )
    # Rollouts recorded in models.config (services/gateway/config_labels.py, docs/rollout.md).
    serving_label: str = Field(
        "stable",
        description="the version label requests naming no version are served from (when AVAILABLE), and that "
        ":promote moves; empty: the newest AVAILABLE version not in shadow",
    )
    rollout_writes_model_config: bool = Field(
        True,
        description="with a model_config_file, :promote, :shadow and DELETE shadow move its version labels and "
        "reload the model server (false, e.g. a read-only ConfigMap: kept in each gateway process only)",
    )

    # Warmup from real traffic (services/gateway/traffic_sample.py): off by default, because the sample is the users'
    # images (at the model's resolution), kept in Redis and then copied into the next version's folder.
    warmup_samples: int = Field(
        0,
        ge=0,
        le=512,
        description="canvases of real requests kept per model (a uniform reservoir in Redis) for the next export's "
        "warmup records; 0: off. Redis holds up to this x S x S x 3 bytes per model",
    )
    warmup_sample_ttl_seconds: int = Field(
        DEFAULT_TTL_SECONDS,
        ge=60,
        description="a model's sample is deleted this long after its first request, then restarts",
    )

    # Access.
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="accepted API keys, comma-separated or a JSON list"
    )
    inference_requires_key: bool = False
    retry_after_seconds: float = Field(1.0, gt=0, description="the Retry-After sent with 503s")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        """Accept ``a,b`` and ``["a", "b"]`` (the env var is a plain string either way)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else [part.strip() for part in text.split(",")]
        if isinstance(value, list | tuple):
            return [v for v in value if (v.get_secret_value() if isinstance(v, SecretStr) else str(v).strip())]
        return value

    @property
    def max_batch_delay_seconds(self) -> float:
        return self.max_batch_delay_ms / 1000.0

    @property
    def queue_deadline_seconds(self) -> float:
        """``queue_deadline_ms``, but at least twice ``max_batch_delay_ms``: a batch's own wait never sheds it."""
        return max(self.queue_deadline_ms, 2 * self.max_batch_delay_ms) / 1000.0

    @property
    def admission_limit(self) -> int:
        """Inference requests admitted at once: ``max_inflight_requests``, or what the queue and the model server's
        in-flight batches hold."""
        if self.max_inflight_requests is not None:
            return self.max_inflight_requests
        return self.max_queue_size + self.max_batch_size * self.max_inflight_batches
