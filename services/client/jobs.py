"""The jobs API from Python: submit, show, list, cancel, fetch artifacts, and follow a job (or its chain) to its end.

    with JobsClient("http://127.0.0.1:8080", api_key="k") as client:
        submitted = client.submit({"type": "train", "dataset": "shapes", "epochs": 5, "export": {"model": "shapes"}})
        for record in client.follow(submitted["job_id"]):
            print(record["state"], record["progress"]["percent"])

Errors come back as :mod:`services.errors` classes (see :mod:`services.client.rest`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from services.client.rest import RestClient

ENDED = ("finished", "failed", "stopped", "canceled")


class JobsClient(RestClient):
    """Calls the gateway's jobs API (``/v1/jobs``); an API key is required there."""

    def __enter__(self) -> JobsClient:
        return self

    def submit(self, params: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/jobs``: ``{"job_id", "status_url", "jobs": [records of the chain]}``."""
        body: dict[str, Any] = self._send("POST", "/v1/jobs", json=params).json()
        return body

    def get(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{id}``: the job's record."""
        body: dict[str, Any] = self._send("GET", f"/v1/jobs/{job_id}").json()
        return body

    def list(self, *, job_type: str | None = None, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """``GET /v1/jobs``: newest first."""
        query = {k: str(v) for k, v in {"type": job_type, "state": state, "limit": limit}.items() if v is not None}
        jobs: list[dict[str, Any]] = self._send("GET", "/v1/jobs", params=query).json()["jobs"]
        return jobs

    def cancel(self, job_id: str) -> dict[str, Any]:
        """``DELETE /v1/jobs/{id}``: the job's record after cancelling."""
        body: dict[str, Any] = self._send("DELETE", f"/v1/jobs/{job_id}").json()
        return body

    def artifact(self, job_id: str, name: str) -> bytes:
        """``GET /v1/jobs/{id}/artifacts/{name}``: the file's bytes."""
        return self._send("GET", f"/v1/jobs/{job_id}/artifacts/{name}").content

    def follow(self, job_id: str, *, interval: float = 1.0, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Poll a job until it ends, yielding its record each time (the last one is its end state)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get(job_id)
            yield record
            if record["state"] in ENDED:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {record['state']} after {timeout} s")
            time.sleep(interval)
