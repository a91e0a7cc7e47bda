"""Notifications (Apprise URLs) and heartbeat pings, bounded in time and never raising.

Apprise speaks the services people use (Slack, Teams, Discord, ntfy, e-mail, a plain JSON
webhook: `json://host:port/path`, ...) by URL. It costs a few hundred milliseconds to import,
so it is imported only when a message is actually sent: the init container's start on a
populated volume never pays for it. A heartbeat URL is pinged the healthchecks.io way
(`URL/start` when a run starts, `URL` on success, `URL/fail` on failure), so a dead-man's
switch notices a sidecar that stopped running at all.

Notification and heartbeat URLs carry their secret anywhere in the URL (Apprise puts tokens
in the host part: `slack://TokenA/TokenB/TokenC`), so they are only ever printed as
`redact_secret_url` shows them: the scheme. A failed delivery is reported to the caller as
text naming the scheme and what went wrong, never the URL.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Literal

from restore import __version__
from restore.redaction import redact_secret_url

Event = Literal["failure", "recovery", "success"]
EVENTS: tuple[Event, ...] = ("failure", "recovery", "success")
Phase = Literal["start", "success", "fail"]
SEND_TIMEOUT_SECONDS = 10.0
# healthchecks.io keeps the first 100 kB of a ping's body; an error text is far below.
MAX_PING_BODY = 10_000
_APPRISE_TYPES = {"failure": "failure", "recovery": "success", "success": "success"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Message:
    """What happened, for people: `event` decides the message's type (colour, icon)."""

    event: Event
    title: str
    body: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Notify:
    """Where to send which events, and the heartbeat URL to ping (None: none)."""

    urls: tuple[str, ...] = ()
    events: frozenset[Event] = frozenset({"failure"})
    heartbeat: str | None = None

    def wants(self, event: Event) -> bool:
        return bool(self.urls) and event in self.events

    def describe(self) -> str:
        """For --check-config: schemes and events, never a URL."""
        urls = ", ".join(redact_secret_url(u) for u in self.urls) or "none"
        events = ", ".join(e for e in EVENTS if e in self.events)
        beat = redact_secret_url(self.heartbeat) if self.heartbeat else "none"
        return f"notify {urls} on {events or 'nothing'}; heartbeat {beat}"


def split_urls(texts: Iterable[str]) -> tuple[str, ...]:
    """URLs from flags, variables or a file: separated by commas, white space or lines."""
    return tuple(url for text in texts for url in text.replace(",", " ").split())


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a notification URL (without loading Apprise), or None."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not rest or not scheme.replace("+", "").isalnum():
        return "not a URL: write an Apprise URL such as json://host:port/path or slack://..."
    return None


def heartbeat_problem(url: str) -> str | None:
    """Why `url` cannot be pinged, or None."""
    if not url.startswith(("http://", "https://")) or url_problem(url):
        return "must be an http:// or https:// URL, e.g. https://hc-ping.com/<uuid>"
    return None


def parse_events(names: Iterable[str]) -> frozenset[Event]:
    """The events named (comma lists allowed). Raise ValueError naming an unknown one."""
    chosen = {name.strip() for text in names for name in text.split(",") if name.strip()}
    unknown = sorted(chosen - set(EVENTS))
    if unknown:
        raise ValueError(f"unknown event {', '.join(unknown)}: use {', '.join(EVENTS)}")
    return frozenset(e for e in EVENTS if e in chosen)


def send(urls: Sequence[str], message: Message, *, timeout: float = SEND_TIMEOUT_SECONDS) -> list[str]:
    """Deliver `message` to each URL, waiting at most `timeout` seconds for each.

    Return one problem per URL that failed (naming its scheme only). Never raises.
    """
    try:
        import apprise  # noqa: PLC0415 - only when a message is actually sent
    except ImportError as error:
        return [f"cannot send notifications: {error}"]
    # Apprise logs delivery details (hosts, sometimes more); our own events say what matters.
    logging.getLogger(apprise.LOGGER_NAME).setLevel(logging.CRITICAL)
    asset = apprise.AppriseAsset(
        app_id="caretaker", app_desc="caretaker", storage_mode=apprise.PersistentStoreMode.MEMORY
    )
    problems = []
    for url in urls:
        client = apprise.Apprise(asset=asset)
        if not client.add(url):
            problems.append(f"{redact_secret_url(url)}: not a URL Apprise knows")
            continue
        try:
            result = client.notify(
                body=message.body,
                title=message.title,
                notify_type=_APPRISE_TYPES[message.event],
                timeout=timeout,
            )
        except Exception as error:  # a plugin's bug must not reach the job
            problems.append(f"{redact_secret_url(url)}: {type(error).__name__}")
            continue
        if not result:
            problems.append(f"{redact_secret_url(url)}: {result.status.name.lower()}")
    return problems


def ping_url(url: str, phase: Phase) -> str:
    """The healthchecks.io-style URL of `phase`: `/start`, the URL itself, `/fail`."""
    if phase == "success":
        return url
    base, sep, query = url.partition("?")
    return f"{base.rstrip('/')}/{phase}{sep}{query}"


def ping(url: str, phase: Phase, body: str = "", *, timeout: float = SEND_TIMEOUT_SECONDS) -> str | None:
    """Ping a heartbeat URL (POST, `body` as the run's log). Return a problem, or None."""
    import urllib.error  # noqa: PLC0415 - not on the init container's start-up path
    import urllib.request  # noqa: PLC0415

    data = body.encode()[:MAX_PING_BODY]
    request = urllib.request.Request(  # noqa: S310 - checked to be http(s) at configuration
        ping_url(url, phase),
        data=data,
        method="POST",
        headers={"User-Agent": f"caretaker/{__version__}", "Content-Type": "text/plain; charset=utf-8"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read(1024)
    except urllib.error.HTTPError as error:
        error.close()
        return f"{redact_secret_url(url)}: answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{redact_secret_url(url)}: {getattr(reason, 'strerror', None) or type(reason).__name__}"
    return None
