"""The one redaction of secrets in printed text: every URL caretaker logs, reports or serves
goes through `redact_url` first (logs, errors, /status, /readyz, result files)."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact_url(url: str) -> str:
    """The URL without a password or token in it, for logs, /status and --check-config.

    A user name alone is kept (`git@host` is not a secret) except over HTTP(S), where a
    user name without password is usually a token.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if parts.password is not None:
        netloc = f"{parts.username}:***@{host}"
    elif parts.username and parts.scheme.endswith(("http", "https")):
        netloc = f"***@{host}"
    else:
        return url
    return parts._replace(netloc=netloc).geturl()
