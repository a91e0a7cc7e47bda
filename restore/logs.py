"""Structured logs: JSON lines on stdout for machines, a readable format on a terminal.

Configured once, in `main()`, never at import time, so importing a module has no side
effects and tests can capture logs with `structlog.testing.capture_logs()`.

On a terminal, control characters in values are escaped (`restore.printable`): a claim's
pod name or a file name from the bucket cannot drive the terminal.

Secrets: the last step before rendering masks values under secret-looking keys and
redacts every URL in every value (`restore.redaction`), tracebacks included. Libraries'
own loggers (botocore, urllib3, GitPython) never log below INFO, not even with
`--log-level debug`: their DEBUG records carry request headers (`Authorization`,
`X-Amz-Security-Token`), signing strings and command lines, which no filter can be trusted
to catch in every library version. caretaker's own debug events are unaffected.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any, Literal, TextIO, cast

import structlog

from restore.printable import printable
from restore.redaction import redact_text

LogFormat = Literal["auto", "json", "console"]
LEVELS = ("debug", "info", "warning", "error")

# Keys whose values must never reach a log line, whatever a caller binds.
_SECRET_KEYS = frozenset(
    {"password", "secret", "token", "aws_secret_access_key", "aws_session_token", "authorization"}
)
# The most a library logs, whatever the level asked for (see the module docstring).
LIBRARY_FLOOR = logging.INFO


def _redact(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    for key, value in event.items():
        event[key] = "***" if key in _SECRET_KEYS else _redacted(value)
    return event


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    return value


def _printable(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """For a terminal: what a bucket or a volume wrote (a host, a claim's pod, a file name)
    must not carry escape sequences to it. Tracebacks keep their lines."""
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = "\n".join(printable(line) for line in value.split("\n"))
    return event


def configure(level: str = "info", fmt: LogFormat = "auto", stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging (botocore, GitPython) to `stream` (stdout by default)."""
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
    ]
    # Redaction comes after the traceback is rendered: exception texts carry URLs too.
    last: list[structlog.typing.Processor] = [structlog.processors.format_exc_info, _redact, renderer]
    if not use_json:  # JSON escapes control characters itself
        last.insert(-1, _printable)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, *last],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", out)),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    # Library chatter (botocore retries, git commands) only when debugging, and never their
    # DEBUG records, even from a logger given a level of its own.
    library_level = LIBRARY_FLOOR if numeric <= logging.DEBUG else logging.WARNING
    handler.setLevel(library_level)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(library_level)
