"""The format of every other log line (not only the request line): JSON when `observability.log_format` is
json, so one log pipeline reads all of stderr; plain text otherwise."""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
                  "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(fields).decode()


def formatter(kind: str) -> logging.Formatter:
    if kind == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(level: str = "info", fmt: str | None = None) -> None:
    """Every log line of this process on stderr, as JSON or text: `fmt`, else GATEWAY_LOG_FORMAT (what `gateway
    serve` sets for its workers and the archiver beside it), else text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt or os.environ.get("GATEWAY_LOG_FORMAT", "text")))
    logging.basicConfig(level=level.upper(), handlers=[handler])
