"""The one redaction of secrets in printed text: every URL caretaker logs, reports or serves
goes through `redact_url` first (logs, errors, /status, /readyz, result files), and text that
may embed URLs (a library's error message, a command's output) through `redact_text`.

What counts as secret in a URL:
- the user information (`user:password@`, `token@`, `KEY:SECRET@`), except the account
  name of an SSH URL (`git@host` names an account, not a credential);
- the value of every query parameter (`?token=...`, a presigned URL's signature), and of
  every fragment parameter except in git URLs, whose fragment holds caretaker's own
  `branch=` and `path=` options;
- with `keep_path=False`, the path too: notification URLs (`slack://TokenA/TokenB`,
  `https://hooks.slack.com/services/T0/B0/XXXX`) carry their secret there.

The logging pipeline (`restore.logs`) applies `redact_text` to every value of every event as
the last step, so an event that forgot to redact is still safe; HTTP responses and the
restore outcome apply it as well. Redaction is a string transformation only: it never
raises, whatever the input.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

MASK = "***"
# Schemes whose user name is an account, shown as is (git@github.com).
_ACCOUNT_SCHEMES = frozenset({"ssh", "git+ssh", "sftp"})
# A URL inside free text: a scheme, `://`, then everything up to white space, a quote or a
# backslash (so a URL inside serialised JSON, `\"http://...\"`, stays inside its string).
# Its scheme is the run of scheme characters before `://`, from the run's first letter. The
# run is matched from its start only and taken whole (possessive): a long run of letters and
# digits costs one pass, where trying every position in it held the GIL, freezing the whole
# process, for seconds (40 KB: 3 s, growing with the square of its length).
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])([0-9+.-]*+)([A-Za-z][A-Za-z0-9+.-]*+://[^\s'\"<>`\\]+)")


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """The URL without a password, token or query value in it, for logs, errors and /status.

    `keep_path=False` also hides the path (for URLs whose path is the secret). Text that
    does not parse as a URL is hidden whole, after its scheme.
    """
    try:
        parts = _split(url)
    except ValueError:
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://{MASK}" if sep else MASK
    changed = parts._replace(
        netloc=_netloc(parts),
        path=parts.path if keep_path or parts.path in {"", "/"} else f"/{MASK}",
        query=_parameters(parts.query),
        fragment=parts.fragment if parts.scheme.startswith("git+") else _parameters(parts.fragment),
    )
    if changed == parts:
        return url  # untouched, not re-assembled: urlsplit/geturl may normalise
    return _unsplit(changed)


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (see `redact_url`)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(_redact_match, text)


def _redact_match(match: re.Match[str]) -> str:
    return match.group(1) + redact_url(match.group(2))  # the run's leading digits are no scheme


def has_userinfo(url: str) -> bool:
    """Whether `url` carries user information (a user name, password or token)."""
    try:
        return "@" in _split(url).netloc
    except ValueError:
        return "@" in url


def _split(url: str) -> SplitResult:
    """`urlsplit`, keeping a password that contains `/` (AWS secret keys may) in the netloc.

    Raise ValueError if `url` cannot be split at all.
    """
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - `KEY:SEC/RET@bucket` splits as host `KEY`, port `SEC`
    except ValueError:
        user_end = parts.path.find("@")
        if user_end >= 0:
            host, slash, path = parts.path[user_end + 1 :].partition("/")
            netloc = f"{parts.netloc}{parts.path[:user_end]}@{host}"
            return parts._replace(netloc=netloc, path=slash + path)
    return parts


def _netloc(parts: SplitResult) -> str:
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return parts.netloc
    if parts.scheme in _ACCOUNT_SCHEMES:
        user, colon, _ = userinfo.partition(":")
        return f"{user}:{MASK}@{host}" if colon else parts.netloc
    return f"{MASK}@{host}"


def _parameters(text: str) -> str:
    """`a=1&b=2` -> `a=***&b=***`; a value without a name is hidden whole."""
    if not text:
        return text
    hidden = []
    for item in text.split("&"):
        name, equals, _ = item.partition("=")
        hidden.append(f"{name}={MASK}" if equals else MASK)
    return "&".join(hidden)


def _unsplit(parts: SplitResult) -> str:
    # urlunsplit drops the `//` of schemes it does not know (git+file:/x): assemble by hand.
    text = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path
    text += f"?{parts.query}" if parts.query else ""
    return text + (f"#{parts.fragment}" if parts.fragment else "")


def redact_secret_url(url: str) -> str:
    """A URL that is secret as a whole, as it may be printed: its scheme only.

    Notification and heartbeat URLs carry tokens anywhere, the host part included
    (`slack://TokenA/TokenB/TokenC`, `tgram://bottoken/chat`, `https://hc-ping.com/<uuid>`),
    where `keep_path=False` would still show the host.
    """
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://{MASK}" if sep and scheme.replace("+", "").isalnum() else MASK
