"""Record a rollout in TFS's ``models.config``: move version labels in the file, then have the model server reload it.

A promotion (and a shadow) that lives only in one gateway process is lost on restart and unknown to the other
processes and pods. Written into ``models.config`` as version labels (the serving label, ``stable`` by default, on
the promoted version; the ``shadow`` label on the shadowed one), it is what TFS serves under those labels at once
(``HandleReloadConfigRequest`` with the same config), and what every gateway reads on its next catalog refresh.

The file is parsed with the generated ``ModelServerConfig`` stubs and written back with ``text_format``, so every
other model and field is kept (comments are not: protobuf's text format has no place for them). It is written
atomically (:func:`services.files.atomic_write`), and writers of the same file take an exclusive ``flock`` on a
hidden lock file beside it, so two gateway processes on one host never lose each other's change. The model
server's own poller may read the new file before the reload arrives; both carry the same config, so the order does
not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from google.protobuf import text_format

from services import errors
from services.files import atomic_write
from services.gateway.tfs import TfsClient
from services.gen.tfs import model_server_config_pb2

logger = logging.getLogger(__name__)


class ConfigLabels:
    """Moves version labels of one ``models.config`` and tells the model server (one per gateway process)."""

    def __init__(self, path: Path, tfs: TfsClient) -> None:
        self.path = path
        self._tfs = tfs
        self._lock = asyncio.Lock()  # one change at a time within the process; flock between processes

    async def move(self, model: str, labels: Mapping[str, int | None]) -> dict[str, int]:
        """Point each of ``labels`` at its version (None: remove the label) for ``model``, in the file and on the
        model server; ``model``'s labels as they now are.

        Raises:
            ModelNotFound: the file does not list ``model``.
            Conflict: the file cannot be read, parsed or written, or the model server refused the new config.
            Unavailable, DeadlineExceeded, UpstreamError: the model server could not answer.

        When the reload fails the file is put back as it was, so the gateways' catalogs never follow a change the
        model server did not take (a reload that timed out may still have been applied: promote again).
        """
        async with self._lock:
            before, after, now = await asyncio.to_thread(self._rewrite, model, labels)
            try:
                await self._tfs.reload_config(after)
            except errors.SpotterError:
                await asyncio.to_thread(self._restore, before)
                raise
            return now

    def _rewrite(
        self, model: str, labels: Mapping[str, int | None]
    ) -> tuple[str, model_server_config_pb2.ModelServerConfig, dict[str, int]]:
        """The file's text before, the config written, and ``model``'s labels in it."""
        with self._locked():
            before, after = self._read()
            entry = next((e for e in after.model_config_list.config if e.name == model), None)
            if entry is None:
                raise errors.ModelNotFound(f"{self.path} does not list model {model!r}; add it there first")
            for label, version in labels.items():
                if version is None:
                    entry.version_labels.pop(label, None)
                else:
                    entry.version_labels[label] = version
            self._write(text_format.MessageToString(after))
            return before, after, {k: int(v) for k, v in entry.version_labels.items()}

    def _restore(self, before: str) -> None:
        with self._locked():
            self._write(before)
        logger.warning("the model server did not take the new labels; %s is back as it was", self.path)

    def _read(self) -> tuple[str, model_server_config_pb2.ModelServerConfig]:
        config = model_server_config_pb2.ModelServerConfig()
        try:
            text = self.path.read_text()
            text_format.Parse(text, config)
        except OSError as err:
            raise errors.Conflict(f"cannot read the model config {self.path}: {err}") from err
        except text_format.ParseError as err:
            raise errors.Conflict(f"{self.path} is not a valid TFS model config: {err}; fix it first") from err
        return text, config

    def _write(self, text: str) -> None:
        try:
            atomic_write(self.path, text)
        except OSError as err:
            raise errors.Conflict(
                f"cannot write the model config {self.path} ({err}); make it writable, or set "
                "SPOTTER_ROLLOUT_WRITES_MODEL_CONFIG=false to keep rollouts per gateway process"
            ) from err

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock shared by every process writing this file (the file itself is renamed over, so the
        lock lives on a hidden file beside it, which model servers skip)."""
        lock_path = self.path.with_name(f".{self.path.name}.lock")
        try:
            handle = lock_path.open("a")
        except OSError as err:
            raise errors.Conflict(f"cannot lock the model config {self.path} ({err}); is its folder writable?") from err
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
