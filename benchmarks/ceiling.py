"""The ceiling: the most images/s the model gives on this machine, the best of the model **in process**
(``benchmarks.inprocess``) and the **model server alone** (``benchmarks.loadgen --kind tfs``), each at the best
batch size of one caller's sweep and at batch 1 by concurrent callers (on a small CPU, two single-image calls at once
can beat one batched stream), with TensorFlow's default thread settings and with tuned ones, measured the same way
(same canvases and batches, closed loops of 1 and 2 callers, the same warm-up, every output fetched).
TensorFlow-free: it only reads what the children measured, picks the best, and says why the others are lower.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

DEFAULT_THREADS = "default"


@dataclass(frozen=True)
class Threads:
    """A TensorFlow thread setting: ``default`` (TensorFlow decides: every core for each pool) or ``INTRAxINTER``."""

    name: str

    @property
    def env(self) -> dict[str, str]:
        """The variables TensorFlow reads at start-up (the model server's session and eager alike)."""
        if self.name == DEFAULT_THREADS:
            return {}
        intra, inter = self.name.split("x")
        return {"TF_NUM_INTRAOP_THREADS": intra, "TF_NUM_INTEROP_THREADS": inter}

    @classmethod
    def parse(cls, text: str) -> Threads:
        """``default`` or ``INTRAxINTER`` (positive integers; ``1x2``: one thread per op, two ops at once).

        Raises:
            ValueError: anything else.
        """
        text = text.strip().lower()
        if text != DEFAULT_THREADS:
            intra, sep, inter = text.partition("x")
            if not (sep and intra.isdigit() and inter.isdigit() and int(intra) > 0 and int(inter) > 0):
                raise ValueError(f"a thread setting is 'default' or INTRAxINTER (e.g. 1x2), not {text!r}")
        return cls(text)


def tuned_threads() -> str:
    """The tuned setting tried next to the default: one thread per op and as many ops (so concurrent calls) at once
    as there are cores, which spends no CPU on splitting each op across cores (TensorFlow's performance guide's
    throughput setting for concurrent requests)."""
    return f"1x{len(os.sched_getaffinity(0))}"


def candidates(inprocess: dict[str, dict[str, Any]], alone: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every measurement at the best batch size (and at batch 1 by 2 callers), in process and by the model server
    alone, as one flat list."""
    found = [
        {
            "source": "in process",
            "way": entry["way"],
            "threads": threads,
            "batch": entry["batch"],
            "callers": entry["callers"],
            "images_per_second": entry["images_per_second"],
            "cpu_ms_per_image": entry["cpu_ms_per_image"],
            "ms_per_call_p50": entry["ms_per_call_p50"],
            "load": entry["load"],
        }
        for threads, child in inprocess.items()
        for entry in child["variants"]
    ]
    found += [
        {
            "source": "model server",
            "way": "Predict",
            "threads": row["threads"],
            "batch": row["batch"],
            "callers": row["concurrency"],
            "images_per_second": row["images_per_second"],
            "cpu_ms_per_image": row["cpu_ms_per_image"].get("modelserver"),
            "ms_per_call_p50": row["latency_ms"]["p50"],
            "load": row["load"],
        }
        for row in alone
    ]
    return found


def _describe(entry: dict[str, Any]) -> str:
    way = "" if entry["source"] == "model server" else f" {entry['way']}"
    callers = "1 caller" if entry["callers"] == 1 else f"{entry['callers']} callers"
    return f"{entry['source']}{way}, threads {entry['threads']}, batch {entry['batch']}, {callers}"


def _best(entries: list[dict[str, Any]], **fixed: Any) -> dict[str, Any] | None:
    chosen = [e for e in entries if all(e[k] == v for k, v in fixed.items())]
    return max(chosen, key=lambda e: e["images_per_second"]) if chosen else None


def _effect(entries: list[dict[str, Any]], key: str, best: dict[str, Any]) -> list[tuple[float, str]]:
    """How much lower the winner's figure is when only ``key`` changes (each other value of it)."""
    same = {k: best[k] for k in ("source", "way", "threads", "callers", "batch") if k != key}
    effects = []
    for entry in entries:
        if entry is best or entry[key] == best[key] or any(entry[k] != v for k, v in same.items()):
            continue
        loss = 1 - entry["images_per_second"] / best["images_per_second"]
        effects.append((loss, f"{key} {entry[key]} instead of {best[key]}: {-loss:+.0%}"))
    return effects


def explain(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The winner, and for the best of the other source why it is lower: what each setting alone costs the
    winner's source, and the two sources side by side at the winner's own settings."""
    best = max(entries, key=lambda e: e["images_per_second"])
    lines = [f"{_describe(best)} won: {best['images_per_second']:.1f} images/s"]
    other_source = "model server" if best["source"] == "in process" else "in process"
    other = _best(entries, source=other_source)
    if other is not None:
        lines.append(
            f"best {other_source}: {other['images_per_second']:.1f} images/s "
            f"({other['images_per_second'] / best['images_per_second']:.2f} x) with {_describe(other)}"
        )
        twin = _best(
            entries, source=other_source, threads=best["threads"], callers=best["callers"], batch=best["batch"]
        )
        if twin is not None:
            share = twin["images_per_second"] / best["images_per_second"]
            lines.append(
                f"at the winner's settings (threads {best['threads']}, batch {best['batch']}, "
                f"{best['callers']} callers) {other_source} "
                f"does {twin['images_per_second']:.1f} images/s ({share:.2f} x)"
            )
    effects = [e for key in ("threads", "callers", "way", "batch") for e in _effect(entries, key, best)]
    effects.sort(reverse=True)
    if effects:
        lines.append("what each setting alone costs the winner: " + "; ".join(text for _, text in effects))
    return {"best": best, "lines": lines}


def cpu_comparison(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model server's CPU per image against in process's (each way) at the same threads, batch and callers."""
    compared = []
    for server in (e for e in entries if e["source"] == "model server"):
        for way in ("session", "function"):
            twin = next(
                (
                    e
                    for e in entries
                    if e["source"] == "in process"
                    and e["way"] == way
                    and all(e[k] == server[k] for k in ("threads", "batch", "callers"))
                ),
                None,
            )
            if twin is None or not server["cpu_ms_per_image"] or not twin["cpu_ms_per_image"]:
                continue
            compared.append(
                {
                    "threads": server["threads"],
                    "batch": server["batch"],
                    "callers": server["callers"],
                    "way": way,
                    "modelserver_cpu_ms": server["cpu_ms_per_image"],
                    "inprocess_cpu_ms": twin["cpu_ms_per_image"],
                    "ratio": server["cpu_ms_per_image"] / twin["cpu_ms_per_image"],
                }
            )
    return compared
