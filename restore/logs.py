"""Structured logs: JSON lines on stdout for machines, a readable format on a terminal.

Configured once, in `main()`, never at import time, so importing a module has no side
effects and tests can capture logs with `structlog.testing.capture_logs()`.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any, Literal, TextIO, cast

import structlog

LogFormat = Literal["auto", "json", "console"]
LEVELS = ("debug", "info", "warning", "error")

# Keys whose values must never reach a log line, whatever a caller binds.
_SECRET_KEYS = frozenset({"password", "secret", "token", "aws_secret_access_key", "authorization"})


def _redact(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    for key in event.keys() & _SECRET_KEYS:
        event[key] = "***"
    return event


def configure(level: str = "info", fmt: LogFormat = "auto", stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging (boto3, GitPython) to `stream` (stdout by default)."""
    out = stream if stream is not None else sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", out)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Library chatter (botocore retries, git commands) only when debugging.
    root.setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
