"""The notification options `caretaker restore` and `caretaker sidecar` share, and reading
them: URLs from flags, their `CARETAKER_*` twins, or a file (a mounted Secret).

URLs are secrets: a problem names them by scheme only (`restore.redaction.redact_secret_url`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from restore.clock import format_time
from restore.errors import Problem
from restore.initcontainer.outcome import Outcome
from restore.model import human_size
from restore.notify import (
    Event,
    Message,
    Notify,
    heartbeat_problem,
    parse_events,
    send,
    split_urls,
    url_problem,
)
from restore.redaction import redact_secret_url, redact_text


def add_notify_options(parser: argparse.ArgumentParser, *, events: Sequence[Event], default: str) -> None:
    """--notify, --notify-file, --notify-on (not given: None, so a config file may set it)."""
    add = parser.add_argument
    add(
        "--notify",
        action="append",
        metavar="URL",
        help="Apprise URL to notify, e.g. json://host:port/path (repeatable; env: comma list; "
        "a secret: prefer --notify-file)",
    )
    add(
        "--notify-file",
        type=Path,
        metavar="FILE",
        help="file with Apprise URLs (one per line or comma-separated), e.g. from a mounted Secret",
    )
    add(
        "--notify-on",
        metavar="EVENTS",
        help=f"what to notify, comma-separated: {', '.join(events)} (default {default})",
    )


def read_notify(
    args: argparse.Namespace, problems: list[Problem], *, events: Sequence[Event], default: str
) -> Notify:
    """The options as given (flags, twins, the file). Problems go to `problems`."""
    urls = read_urls(args.notify or (), args.notify_file, problems, key="--notify (CARETAKER_NOTIFY)")
    chosen = read_events(
        args.notify_on or default, problems, key="--notify-on (CARETAKER_NOTIFY_ON)", allowed=events
    )
    return Notify(urls=urls, events=chosen)


def read_events(
    text: str | Sequence[str], problems: list[Problem], *, key: str, allowed: Sequence[Event]
) -> frozenset[Event]:
    """Events from a comma list (or a list of names). A problem for one not in `allowed`."""
    names = [text] if isinstance(text, str) else list(text)
    try:
        chosen = parse_events(names)
    except ValueError as error:
        problems.append(Problem(key, text, str(error)))
        return frozenset()
    if chosen - set(allowed):
        problems.append(Problem(key, text, f"must be among {', '.join(allowed)}"))
    return chosen & frozenset(allowed)


def read_urls(
    given: Sequence[str], file: Path | None, problems: list[Problem], *, key: str
) -> tuple[str, ...]:
    """URLs from `given` plus the file's. A problem for a bad or unreadable one."""
    texts = list(given)
    if file is not None:
        try:
            texts.append(file.read_text(encoding="utf-8"))
        except OSError as error:
            problems.append(Problem(f"{key} file", str(file), f"cannot read: {error.strerror or error}"))
    urls = split_urls(texts)
    for url in urls:
        problem = url_problem(url)
        if problem:
            problems.append(Problem(key, redact_secret_url(url), problem))
    return tuple(u for u in urls if not url_problem(u))


def read_heartbeat(url: str | None, file: Path | None, problems: list[Problem], *, key: str) -> str | None:
    """The heartbeat URL from a value or a file; a problem if both, or if it is no http(s) URL."""
    if url and file is not None:
        problems.append(Problem(key, "***", "set the URL or its file, not both"))
    found = read_urls([url] if url else [], file, problems, key=key)
    if len(found) > 1:
        problems.append(Problem(key, "***", "one heartbeat URL only"))
    if not found:
        return None
    problem = heartbeat_problem(found[0])
    if problem:
        problems.append(Problem(key, redact_secret_url(found[0]), problem))
        return None
    return found[0]


def restore_message(outcome: Outcome, *, host: str, path: Path) -> Message:
    """The restore outcome for people: what happened, where, and why (error text redacted)."""
    lines = [f"host: {host}", f"path: {path}", f"outcome: {outcome.outcome} (exit {outcome.exit_code})"]
    if outcome.reason:
        lines.append(f"reason: {outcome.reason}")
    if outcome.snapshot:
        taken = format_time(outcome.snapshot_time) if outcome.snapshot_time else "unknown time"
        lines.append(f"snapshot: {outcome.snapshot} (taken {taken})")
    if outcome.outcome == "restored":
        lines.append(f"restored: {outcome.files} files, {human_size(outcome.bytes)}")
    lines.append(f"duration: {outcome.duration_seconds:.1f}s")
    if outcome.error:
        lines.append(f"error: {redact_text(outcome.error)}")
    return Message(
        event="failure" if outcome.outcome == "failed" else "success",
        title=f"caretaker restore {outcome.outcome} on {host}",
        body="\n".join(lines),
    )


def notify_outcome(notify: Notify, outcome: Outcome, *, host: str, path: Path, log: Any) -> None:
    """Send the outcome where `notify` wants it: at most a timeout per URL, never raising."""
    message = restore_message(outcome, host=host, path=path)
    if not notify.wants(message.event):
        return
    problems = send(notify.urls, message)
    for problem in problems:
        log.warning("notify.failed", notify_event=message.event, problem=problem)
    log.info("notify.sent", notify_event=message.event, delivered=len(notify.urls) - len(problems))
