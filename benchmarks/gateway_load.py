"""The load generator of the gateway-ceiling bench (``python -m benchmarks.gateway_load``, a process of its own):
the closed loop of :func:`benchmarks.loadgen.generate` sending a folder's image files to the gateway's ``:detect``
over REST or ``DetectionService/Detect`` over gRPC, with a ``tile`` mode, watching the CPU time of every gateway
process. Prints one JSON object on stdout.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from benchmarks.inputs import Example
from benchmarks.loadgen import Watch, generate, grpc_sender, rest_sender

_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def files(folder: Path) -> list[Example]:
    """The image files of ``folder``, sorted by name."""
    found = [
        Example(p.name, p.read_bytes(), _MEDIA_TYPES[p.suffix.lower()])
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in _MEDIA_TYPES
    ]
    if not found:
        raise typer.BadParameter(f"no image file in {folder}")
    return found


async def run(options: dict[str, Any]) -> dict[str, Any]:
    examples = files(options["folder"])
    watches = [Watch(name, pid) for name, pid in options["pids"].items()]
    common = {
        "concurrency": options["concurrency"],
        "warmup": options["warmup"],
        "duration": options["duration"],
        "requests": None,
        "min_calls": options["min_calls"],
        "watches": watches,
    }
    if options["protocol"] == "rest":
        limits = httpx.Limits(max_connections=options["concurrency"], max_keepalive_connections=options["concurrency"])
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            return await generate(
                rest_sender(client, options["url"], options["model"], examples, options["tile"]), **common
            )
    import grpc

    size = 64 * 1024 * 1024
    channel_options = [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]
    # One channel per client: a real fleet of callers opens many connections, which SO_REUSEPORT spreads over the
    # gateway's processes (one shared channel would be one connection, served by one process).
    channels = [
        grpc.aio.insecure_channel(options["url"], options=channel_options) for _ in range(options["concurrency"])
    ]
    senders = [grpc_sender(c, options["model"], examples, options["tile"]) for c in channels]
    count = len(senders)

    async def send(n: int) -> str:
        return await senders[n % count](n)

    try:
        return await generate(send, **common)
    finally:
        for channel in channels:
            await channel.close()


def main(
    protocol: Annotated[str, typer.Option(help="rest or grpc")],
    url: Annotated[str, typer.Option(help="gateway base URL (rest) or host:port (grpc)")],
    folder: Annotated[Path, typer.Option(help="folder of image files to send, cycling")],
    watch: Annotated[list[str], typer.Option(help="NAME=PID of a gateway process whose CPU time to read")],
    tile: str = "auto",
    model: str = "demo",
    concurrency: Annotated[int, typer.Option(min=1)] = 32,
    duration: float = 5.0,
    warmup: float = 1.0,
    min_calls: Annotated[int, typer.Option(min=1)] = 3,
) -> None:
    """Closed-loop load on the gateway for one gateway-ceiling row; prints what was measured, as JSON."""
    if protocol not in ("rest", "grpc"):
        raise typer.BadParameter(f"--protocol is rest or grpc, not {protocol!r}")
    pids: dict[str, int] = {}
    for item in watch:
        name, _, pid = item.partition("=")
        pids[name] = int(pid)
    options = {
        "protocol": protocol,
        "url": url,
        "folder": folder,
        "pids": pids,
        "tile": tile,
        "model": model,
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
        "min_calls": min_calls,
    }
    typer.echo(json.dumps(asyncio.run(run(options))))


if __name__ == "__main__":
    typer.run(main)
