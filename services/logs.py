"""One logging configuration for every Spotter process: JSON lines (or plain text for a terminal), with the request
id of the request being served when there is one."""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("spotter_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record, from the context of the request being served."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Configure the root logger once per process; uvicorn and RQ are started so that they use it, and Python's
    warnings are logged through it."""
    formatter: dict[str, object]
    if json:
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    else:
        formatter = {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"default": formatter},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "filters": ["request_id"],
                }
            },
            "root": {"level": level.upper(), "handlers": ["stderr"]},
            "loggers": {
                "uvicorn.access": {"level": "WARNING"},
                "httpx": {"level": "WARNING"},
            },
        }
    )
    # Library warnings (Pillow's DecompressionBombWarning and EXIF warnings, deprecations) become WARNING records of
    # the `py.warnings` logger, one JSON line like every other, instead of raw text on stderr.
    logging.captureWarnings(True)
