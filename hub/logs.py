"""Structured JSON logs with stable keys: the message is the key (``jira.webhook.bad-signature``),
context travels in ``extra``. Secrets never reach a log: settings hold them as SecretStr and the
code logs ids and error codes, never requests or headers."""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    """Set the hub's log level (also at run time, when the settings file changes: hub/reload.py)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    # the libraries' own INFO lines are many; SWITCHBOARD_LIBRARY_LOG_LEVEL=INFO shows them when debugging
    library_level = os.environ.get("SWITCHBOARD_LIBRARY_LOG_LEVEL", "WARNING").upper()
    for noisy in ("aiokafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(library_level) if library_level in ("DEBUG", "INFO", "WARNING", "ERROR") else logging.WARNING, root.level))


def is_level(level: str) -> bool:
    return isinstance(logging.getLevelName(level.upper()), int)
