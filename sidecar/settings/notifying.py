"""Notification and heartbeat settings of the sidecar: global (flags with their CARETAKER_*
twins and `*_FILE` forms, or the config file's top level) and per job (the config file).

In the file, both take the same shape:

    notify: {urls: [json://...], urls_file: /etc/caretaker/secrets/notify, events: [failure, recovery]}
    heartbeat: {url: https://hc-ping.com/<uuid>}   # or {url_file: /etc/caretaker/secrets/hc}

A ConfigMap is no place for a token: prefer `urls_file`/`url_file` naming a mounted Secret.
URLs are secrets, so problems name them by scheme only.
"""

from __future__ import annotations

from pathlib import Path

from restore.commands.notifying import read_events, read_heartbeat, read_urls
from restore.errors import Problem
from restore.notify import EVENTS, Notify, parse_events
from sidecar.settings.fields import Fields
from sidecar.settings.options import DEFAULT_NOTIFY_EVENTS, Flags, flag_key

_DEFAULT = Notify(events=parse_events([DEFAULT_NOTIFY_EVENTS]))


def global_notify(flags: Flags, file: Notify | None, problems: list[Problem]) -> Notify:
    """Flags (and their twins) over the file's top-level settings over the defaults."""
    base = file or _DEFAULT
    urls = read_urls(flags.notify, flags.notify_file, problems, key=flag_key("notify"))
    heartbeat = read_heartbeat(
        flags.heartbeat_url, flags.heartbeat_url_file, problems, key=flag_key("heartbeat-url")
    )
    events = base.events
    if flags.notify_on is not None:
        events = read_events(flags.notify_on, problems, key=flag_key("notify-on"), allowed=EVENTS)
    return Notify(urls=urls or base.urls, events=events, heartbeat=heartbeat or base.heartbeat)


def file_notify(fields: Fields) -> Notify | None:
    """The `notify` and `heartbeat` keys of a mapping (top level or a job); None if absent."""
    if not (fields.has("notify") or fields.has("heartbeat")):
        return None
    block = fields.child("notify")
    urls = read_urls(
        _secret_strings(block, "urls"), _path(block, "urls_file"), fields.problems, key=block.key("urls")
    )
    on = block.raw("events")
    events = _DEFAULT.events
    if on is not None:
        names = on if isinstance(on, list) else str(on)
        events = read_events(names, fields.problems, key=block.key("events"), allowed=EVENTS)
    block.finish()
    beat = fields.child("heartbeat")
    url = _secret_strings(beat, "url")
    heartbeat = read_heartbeat(
        url[0] if url else None, _path(beat, "url_file"), fields.problems, key=beat.key("url")
    )
    beat.finish()
    return Notify(urls=urls, events=events, heartbeat=heartbeat)


def _secret_strings(fields: Fields, name: str) -> tuple[str, ...]:
    """A string or a list of strings whose values are never shown in a problem."""
    value = fields.raw(name)
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        fields.problem(name, "***", "must be a string or a list of strings")
        return ()
    return tuple(items)


def _path(fields: Fields, name: str) -> Path | None:
    text = fields.string(name)
    return Path(text) if text else None
