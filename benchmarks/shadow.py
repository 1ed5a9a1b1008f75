"""What a shadow canary costs the served requests: p99 of ``:detect`` with the shadow off and on, side by side.

``python -m benchmarks.shadow [--clients 8 --clients 32] [--rates 1.0 --rates 0.1] [--repeats 2]`` serves the demo
model's version 1 twice (as versions 1 and 2, so the shadow is the same model) from one embedded model server, runs
one gateway in front of it, and for each client count measures rounds of the project's closed-loop load generator
(``benchmarks.loadgen``, a process of its own) in turn: shadow off, then version 2 in shadow at each sample rate,
repeated, so that the machine's other load falls on every mode alike. Prints one JSON row per round (p50/p99, errors,
and the shadow's compared and shed samples in that round) and a summary per (clients, mode): the median of the
rounds' p99s. Numbers from a shared machine: read them next to the ``uptime`` load it prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from benchmarks.stack import gateway
from services.modelserver.launch import running_model_server

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "models" / "demo" / "1"
KEY = "bench-shadow-key"


@contextlib.contextmanager
def two_versions(work: Path) -> Iterator[str]:
    """A model server over ``demo`` versions 1 and 2, both links to models/demo/1; yields its gRPC target."""
    root = work / "models" / "demo"
    root.mkdir(parents=True)
    for version in ("1", "2"):
        (root / version).symlink_to(DEMO.resolve(), target_is_directory=True)
    config = work / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "demo" base_path: "{root}" model_platform: "tensorflow" '
        "model_version_policy { all {} } } }\n"
    )
    with running_model_server(work / "models", log_dir=work / "logs", config_file=config, wait_for=["demo"]) as ms:
        yield ms.grpc_target


def set_shadow(client: httpx.Client, rate: float | None) -> None:
    """Version 2 in shadow at ``rate``, or out of shadow (None)."""
    if rate is None:
        client.delete("/v1/models/demo/versions/2/shadow", headers={"X-API-Key": KEY})
        return
    for _ in range(300):  # version 2 may still be loading (409)
        response = client.post(
            "/v1/models/demo/versions/2:shadow", json={"sample_rate": rate}, headers={"X-API-Key": KEY}
        )
        if response.status_code == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"could not put version 2 in shadow: {response.text}")


def shadow_counts(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/models/demo/versions/2/shadow", headers={"X-API-Key": KEY})
    if response.status_code != 200:
        return {}
    body = response.json()
    return {"samples": body["samples"], "failures": body["failures"], "dropped": body["dropped"]}


def load(url: str, clients: int, duration: float, input_size: int, pid: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.loadgen", "--kind", "rest", "--url", url, "--model", "demo",
            "--concurrency", str(clients), "--duration", str(duration), "--warmup", "1",
            "--input-size", str(input_size), "--watch", f"gateway={pid}",
        ],
        capture_output=True, text=True, cwd=REPO, check=True, timeout=duration * 4 + 120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(
    clients: Annotated[list[int] | None, typer.Option(help="concurrent clients (repeat the option)")] = None,
    rates: Annotated[list[float] | None, typer.Option(help="shadow sample rates to compare with off")] = None,
    repeats: Annotated[int, typer.Option(min=1)] = 2,
    duration: Annotated[float, typer.Option(help="measured seconds per round")] = 8.0,
) -> None:
    """Measure served p99 with the shadow off and on, alternating, and print JSON rows and a summary."""
    modes: list[float | None] = [None, *(rates or [1.0])]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp, two_versions(Path(tmp)) as target:
        settings = {"api_keys": KEY, "model_root": str(Path(tmp) / "models")}
        with gateway("gateway", target, Path(tmp), settings) as gw, httpx.Client(base_url=gw.url, timeout=30) as http:
            set_shadow(http, 1.0)  # wait until version 2 is loaded and warm it up, then start from off
            set_shadow(http, None)
            input_size = next(
                v["input_size"] for v in http.get("/v1/models/demo").json()["versions"] if v["input_size"]
            )
            pid = gw.server.proc.pid
            for n in clients or [8, 32]:
                for repeat in range(repeats):
                    for rate in modes:
                        set_shadow(http, rate)
                        result = load(gw.url, n, duration, input_size, pid)
                        row = {
                            "clients": n, "shadow": rate, "repeat": repeat, "calls": result["calls"],
                            "errors": result["errors"], "p50_ms": result["latency_ms"]["p50"],
                            "p99_ms": result["latency_ms"]["p99"], "shadow_counts": shadow_counts(http),
                            "load": os.getloadavg()[0],
                        }  # fmt: skip
                        set_shadow(http, None)
                        rows.append(row)
                        typer.echo(json.dumps(row))
    for n in clients or [8, 32]:
        for rate in modes:
            mine = [r for r in rows if r["clients"] == n and r["shadow"] == rate]
            summary = {
                "clients": n,
                "shadow": rate,
                "p99_ms_median": statistics.median(r["p99_ms"] for r in mine),
                "p99_ms_rounds": [round(r["p99_ms"], 1) for r in mine],
                "errors": sum(sum(r["errors"].values()) for r in mine),
            }
            typer.echo(json.dumps({"summary": summary}))


if __name__ == "__main__":
    typer.run(main)
