"""Dataset routes: upload an archive to import (``POST /v1/datasets``), list datasets, show one with its versions.

The upload is a multipart form streamed straight into ``data/uploads/<id>/`` (never held in memory or in a temporary
folder elsewhere), stopped with 413 as soon as it passes the limit. Its archive listing is checked before anything
is queued (a hostile archive gets 400 with the reason and leaves nothing behind); then an import job goes on the
``spotter-data`` queue under the upload's id, and the answer is 202 with the job's id.

RQ needs a synchronous Redis client: each upload opens one (``redis.Redis``) for its enqueue in a worker thread and
closes it; uploads are rare and heavy, so a connection per upload costs nothing that matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import redis
from fastapi import APIRouter, Request, Response
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from services.errors import (
    DatasetNotFound,
    InvalidInput,
    InvalidParameter,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from services.gateway.api.dataset_schemas import DatasetDetail, DatasetList
from services.gateway.api.deps import ApiKeyDep, SettingsDep
from services.gateway.api.schemas import error_responses
from services.jobs.queues import enqueue
from services.jobs.schemas import QueuedJob
from services.jobs.types import IMPORT, import_body
from services.store.datasets.storage import DatasetStore
from services.store.datasets.uploads import (
    ARCHIVE_FILE,
    LABEL_MAP_FILE,
    MAX_LABEL_MAP_BYTES,
    new_upload_id,
    prepare_import,
    upload_folder,
)

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter(prefix="/v1", tags=["datasets"])

MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
_TEXT_FIELDS = {"name", "format", "split", "test_split", "seed", "pool"}

_UPLOAD_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "name", "format"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "a zip or tar.gz archive"},
                        "name": {"type": "string", "description": "the dataset (a new version of it is made)"},
                        "format": {"type": "string", "enum": ["voc", "csv", "folders", "tfrecord"]},
                        "split": {"type": "number", "default": 0.8, "minimum": 0.5, "maximum": 0.95},
                        "test_split": {"type": "number", "default": 0.0, "minimum": 0.0, "maximum": 0.4},
                        "seed": {"type": "integer", "default": 0},
                        "pool": {"type": "boolean", "default": False, "description": "folders as an AL pool"},
                        "label_map": {"type": "string", "format": "binary", "description": "a label map .pbtxt"},
                    },
                }
            }
        },
    }
}
_ERRORS = error_responses(
    {
        400: "a hostile or unreadable archive (with the reason), a bad label map",
        401: "no API key",
        403: "a wrong API key",
        404: "no such dataset",
        413: "the upload or its expanded archive is over a limit",
        415: "not a multipart form, or not a zip / tar.gz",
        422: "a missing or bad field (name, format, split...)",
        503: "the job queue (Redis) can't be reached",
    }
)


class _FormToFolder:
    """python-multipart callbacks that write the ``file`` and ``label_map`` parts into the upload folder, keep the
    short text fields, and enforce every size limit as the bytes arrive."""

    def __init__(self, folder: Path, max_file_bytes: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.archive_name: str | None = None
        self.parts = 0
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition: dict[bytes, bytes] = {}
        self._name = ""
        self._size = 0
        self._limit = 0
        self._buffer = bytearray()
        self._file: Any = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _end(self) -> None:
        self.ended = True

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name.extend(data[start:end])

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidInput(f"the form has more than {MAX_PARTS} parts")
        self._disposition = {}
        self._size = 0
        self._buffer = bytearray()

    def _header_end(self) -> None:
        if bytes(self._header_name).strip().lower() == b"content-disposition":
            _, self._disposition = parse_options_header(bytes(self._header_value))
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        self._name = self._disposition.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            filename = self._disposition.get(b"filename", b"").decode("utf-8", "replace")
            self.archive_name = Path(filename.replace("\\", "/")).name or None
            self._open(ARCHIVE_FILE, self.max_file_bytes)
        elif self._name == "label_map":
            self._open(LABEL_MAP_FILE, MAX_LABEL_MAP_BYTES)
        elif self._name in _TEXT_FIELDS:
            if self._name in self.fields:
                raise InvalidInput(f"the field {self._name!r} is sent twice")
            self._limit = MAX_FIELD_BYTES
        else:
            raise InvalidInput(f"unknown form field {self._name!r}")

    def _open(self, filename: str, limit: int) -> None:
        try:
            self._file = (self.folder / filename).open("xb")
        except FileExistsError:
            raise InvalidInput(f"the field {self._name!r} is sent twice") from None
        self._limit = limit

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._size > self._limit:
            if self._file is not None:
                raise PayloadTooLarge(
                    f"{self._name} is larger than {self._limit} bytes", details={"max_bytes": self._limit}
                )
            raise InvalidInput(f"the field {self._name!r} is longer than {self._limit} bytes")
        if self._file is not None:
            self._file.write(data[start:end])
        else:
            self._buffer.extend(data[start:end])

    def _part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name in _TEXT_FIELDS:
            self.fields[self._name] = self._buffer.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


async def _receive_form(request: Request, folder: Path, max_bytes: int) -> _FormToFolder:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMediaType("send the archive as multipart/form-data (field 'file')")
    body_limit = max_bytes + MAX_LABEL_MAP_BYTES + 64 * 1024
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(
            f"the upload is {declared} bytes; the limit is {max_bytes} bytes", details={"max_bytes": max_bytes}
        )
    sink = _FormToFolder(folder, max_bytes)
    parser = MultipartParser(options[b"boundary"], sink.callbacks(), max_size=body_limit)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise PayloadTooLarge(f"the upload is over {max_bytes} bytes", details={"max_bytes": max_bytes})
            # File writes happen in the parser's callbacks: off the event loop.
            await anyio.to_thread.run_sync(parser.write, chunk)
        parser.finalize()
    except FormParserError as exc:
        raise InvalidInput(f"the multipart body is malformed: {exc}") from exc
    finally:
        sink.close()
    if not sink.ended:
        raise InvalidInput("the multipart body ended before its closing boundary")
    return sink


def _enqueue(redis_url: str, job_id: str, body: dict[str, Any], timeout: int) -> None:
    try:
        with redis.Redis.from_url(redis_url, socket_connect_timeout=5) as connection:
            enqueue(connection, IMPORT.queue, IMPORT.func, body, job_type=IMPORT.name, job_id=job_id, timeout=timeout)
    except redis.RedisError as exc:
        raise Unavailable(f"the job queue (Redis) can't be reached: {exc}; the upload was not kept") from exc


@router.post(
    "/datasets", status_code=202, openapi_extra=_UPLOAD_FORM, responses={**_ERRORS, 202: {"description": "queued"}}
)
async def upload_dataset(request: Request, settings: SettingsDep, _: ApiKeyDep, response: Response) -> QueuedJob:
    """Upload a zip or tar.gz of labelled images; an import job makes it the dataset's next version."""
    upload_id = new_upload_id()
    max_bytes = settings.dataset_max_upload_bytes
    limits = settings.archive_limits()
    with upload_folder(settings.data_dir, upload_id) as folder:
        form = await _receive_form(request, folder, max_bytes)
        import_request = await run_in_threadpool(
            prepare_import, settings.data_dir, upload_id, form.fields, archive_name=form.archive_name, limits=limits
        )
        await run_in_threadpool(
            _enqueue, settings.redis_url, upload_id, import_body(import_request), settings.import_timeout_seconds
        )
    status_url = f"/v1/jobs/{upload_id}"
    response.headers["Location"] = status_url
    return QueuedJob(job_id=upload_id, status_url=status_url)


@router.get("/datasets", response_model_exclude_unset=True, responses=_ERRORS)
async def list_datasets(settings: SettingsDep, _: ApiKeyDep) -> DatasetList:
    """Datasets, each with its versions and its latest version's summary."""

    def read() -> list[dict[str, Any]]:
        store = DatasetStore(settings.data_dir)
        return [{**store.manifest(n).summary(), "versions": store.versions(n)} for n in store.names()]

    return DatasetList.model_validate({"datasets": await run_in_threadpool(read)})


@router.get("/datasets/{name}", response_model_exclude_unset=True, responses=_ERRORS)
async def get_dataset(name: str, settings: SettingsDep, _: ApiKeyDep) -> DatasetDetail:
    """A dataset's versions, each with its summary, per-class table, split and source."""

    def read() -> dict[str, Any]:
        try:
            manifests = DatasetStore(settings.data_dir).manifests(name)
        except InvalidParameter:
            raise DatasetNotFound(f"dataset {name!r} not found") from None
        versions = [
            {
                **m.summary(),
                "table": m.summary_rows(),
                "split": m.split.model_dump(mode="json"),
                "source": m.source.model_dump(mode="json"),
            }
            for m in manifests
        ]
        return {"name": name, "latest": versions[-1]["version"], "versions": versions}

    return DatasetDetail.model_validate(await run_in_threadpool(read))
