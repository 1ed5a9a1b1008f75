"""Detect objects in an image with Spotter's gRPC API.

    python docs/examples/grpc_client.py 127.0.0.1:50051 models/demo/examples/scene-1.png --model demo
    python docs/examples/grpc_client.py gateway:50051 street.jpg --model demo --min-score 0.3 --json

Needs only grpcio, protobuf and Spotter's generated stubs (the project's environment after ``make protos``); not
TensorFlow. The API key, when the gateway wants one, comes from
``--api-key`` or ``SPOTTER_API_KEY``. Exits 0 with the detections, 1 with the gateway's error.
"""

# ruff: noqa: T201 (a command-line example: it prints its answer)
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from services.client.rpc import DetectionClient
from services.errors import SpotterError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Detect objects in an image over Spotter's gRPC API.")
    parser.add_argument("target", help="the gateway's gRPC address, host:port (e.g. 127.0.0.1:50051)")
    parser.add_argument("image", type=Path, help="a JPEG, PNG or WebP file")
    parser.add_argument("--model", default="demo", help="the model to ask (default: demo)")
    parser.add_argument("--min-score", type=float, default=None, help="drop detections scoring below this")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    parser.add_argument("--api-key", default=os.environ.get("SPOTTER_API_KEY"), help="the gateway's API key")
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    args = parser.parse_args(argv)

    with DetectionClient(args.target, api_key=args.api_key, timeout=args.timeout) as client:
        try:
            result = client.detect(args.image, model=args.model, min_score=args.min_score)
        except SpotterError as err:
            print(f"error: {err.code}: {err.message}", file=sys.stderr)
            return 1
        except OSError as err:
            print(f"error: cannot read {args.image}: {err}", file=sys.stderr)
            return 1

    if args.json:
        print(json.dumps(result.to_dict()))  # the REST API's JSON, the same whichever transport answered
        return 0
    print(
        f"{result.model} version {result.version}: {len(result.detections)} detections in "
        f"{result.width}x{result.height}"
    )
    for d in result.detections:
        box = d.box
        where = f"x {box.xmin:7.1f} .. {box.xmax:7.1f}  y {box.ymin:7.1f} .. {box.ymax:7.1f}"
        print(f"  {d.label:<12} {d.score:5.3f}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
