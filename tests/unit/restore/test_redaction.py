"""The one redaction of printed URLs, and the log pipeline that applies it to every event."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
import structlog

from restore import logs
from restore.errors import ConfigError, Problem
from restore.redaction import has_userinfo, redact_text, redact_url

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("file:///backups/app", "file:///backups/app"),
        (
            "git+ssh://git@host/org/repo.git#branch=b&path=p",
            "git+ssh://git@host/org/repo.git#branch=b&path=p",
        ),
        ("git+ssh://git:pw@host/r.git", "git+ssh://git:***@host/r.git"),
        ("git+https://user:s3cret@host/r.git", "git+https://***@host/r.git"),
        ("git+https://ghp_token@host/r.git", "git+https://***@host/r.git"),
        ("http://u:p@127.0.0.1:8080/x", "http://***@127.0.0.1:8080/x"),
        (f"s3://AKIDEXAMPLE:{AWS_SECRET}@bucket/app", "s3://***@bucket/app"),
        ("http://127.0.0.1:8080/flush?token=abc&mode=x", "http://127.0.0.1:8080/flush?token=***&mode=***"),
        ("http://127.0.0.1/x?abc", "http://127.0.0.1/x?***"),
        ("https://app/cb#access_token=abc", "https://app/cb#access_token=***"),
        ("http://[::1", "http://***"),
    ],
)
def test_redact_url_hides_user_information_and_parameter_values(url, shown):
    assert redact_url(url) == shown


def test_notification_urls_can_hide_their_path():
    url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET"
    assert redact_url(url, keep_path=False) == "https://hooks.slack.com/***"
    assert redact_url("slack://TokenA@TokenB/TokenC", keep_path=False) == "slack://***@TokenB/***"


def test_has_userinfo_sees_a_password_with_a_slash():
    assert has_userinfo(f"s3://AKID:{AWS_SECRET}@bucket/app")
    assert has_userinfo("git+https://tok@host/r.git")
    assert not has_userinfo("http://127.0.0.1:8080/@user/x")


def test_redact_text_redacts_every_url_and_keeps_the_rest():
    text = (
        'Could not connect to the endpoint URL: "http://127.0.0.1:8333/b?X-Amz-Signature=abc"; '
        "fatal: unable to access 'https://tok@git.example/r.git/': 403"
    )
    assert redact_text(text) == (
        'Could not connect to the endpoint URL: "http://127.0.0.1:8333/b?X-Amz-Signature=***"; '
        "fatal: unable to access 'https://***@git.example/r.git/': 403"
    )
    assert redact_text("no url here: a:b@c") == "no url here: a:b@c"


def test_problems_never_print_credentials():
    error = ConfigError([Problem("repository", f"s3://AKID:{AWS_SECRET}@bucket/app", "bad")])
    assert AWS_SECRET not in str(error)
    assert "K7MDENG" not in str(error)
    assert "s3://***@bucket/app" in str(error)


class TestLogs:
    @pytest.fixture
    def stream(self) -> io.StringIO:
        buffer = io.StringIO()
        logs.configure("debug", "json", stream=buffer)
        return buffer

    def lines(self, stream: io.StringIO) -> list[dict[str, object]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    def test_every_value_is_redacted_nested_and_in_tracebacks(self, stream):
        log = structlog.get_logger()
        log.info("x.failed", error="GET http://a:b@h/ failed", urls=["http://h/?token=t1"], token="t2")

        def fail() -> None:
            raise RuntimeError("cannot reach https://h/hook?token=t3")

        try:
            fail()
        except RuntimeError:
            log.exception("x.crashed")
        text = stream.getvalue()
        for secret in ("a:b@", "t1", "t2", "t3"):
            assert secret not in text
        first, second = self.lines(stream)
        assert first["error"] == "GET http://***@h/ failed"
        assert first["urls"] == ["http://h/?token=***"]
        assert "https://h/hook?token=***" in str(second["exception"])

    def test_library_debug_records_never_pass_even_at_debug(self, stream):
        # botocore logs request headers (Authorization, X-Amz-Security-Token) at DEBUG.
        botocore = logging.getLogger("botocore.endpoint")
        botocore.debug("Sending http request: headers={'X-Amz-Security-Token': b'tok-debug'}")
        botocore.setLevel(logging.DEBUG)  # even a logger given a level of its own
        botocore.debug("Sending http request: headers={'Authorization': b'sig-debug'}")
        botocore.info("Found credentials in environment variables.")
        botocore.setLevel(logging.NOTSET)
        text = stream.getvalue()
        assert "tok-debug" not in text
        assert "sig-debug" not in text
        assert [line["event"] for line in self.lines(stream)] == [
            "Found credentials in environment variables."
        ]

    def test_library_records_are_redacted_too(self, stream):
        logging.getLogger("urllib3").warning("Retrying after error: http://u:pw@h/x?sig=abc")
        (line,) = self.lines(stream)
        assert line["event"] == "Retrying after error: http://***@h/x?sig=***"

    def test_caretaker_debug_events_still_pass(self, stream):
        structlog.get_logger().debug("http.request", message="GET /metrics")
        assert self.lines(stream)[0]["event"] == "http.request"


def test_redact_text_keeps_serialised_json_valid():
    document = {"error": 'cannot reach "http://h/x?token=abc&b=1": refused', "u": "http://a:b@h/"}
    redacted = json.loads(redact_text(json.dumps(document)))
    assert redacted == {"error": 'cannot reach "http://h/x?token=***&b=***": refused', "u": "http://***@h/"}


def test_console_logs_escape_what_a_terminal_would_act_on():
    """A claim's pod name or a file name comes from the bucket or the volume: on a terminal
    its escape sequences are shown, never sent; a traceback keeps its lines."""
    buffer = io.StringIO()
    logs.configure("info", "console", stream=buffer)
    log = structlog.get_logger()
    log.warning("claim.standby", holder="pod\x1b]0;owned\x07-a\x1b[2J")

    def fail() -> None:
        raise RuntimeError("name \x1b[31mred")

    try:
        fail()
    except RuntimeError:
        log.exception("x.crashed")
    text = buffer.getvalue()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "pod\\x1b]0;owned\\x07-a\\x1b[2J" in text
    assert "Traceback (most recent call last):\n" in text


@pytest.mark.parametrize("run", ["a" * 200_000, "a1" * 100_000, "1" * 200_000 + "a"])
def test_a_long_run_of_scheme_characters_is_scanned_once(run):
    """The log pipeline redacts every value while holding the GIL: text that made the
    pattern try each position (200 KB: over a minute, the whole process frozen) must not."""
    started = time.monotonic()
    assert redact_text(f"{run} http://u:pw@h/x") == f"{run} http://***@h/x"
    assert redact_text(f"{run}://u:pw@h/").endswith("@h/")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("1http://u:pw@h/", "1http://***@h/"),
        (":://?Z://&?b", ":://?z://&?***"),  # a URL right after a `://` that is none
        ("x (git+https://u:tok@h/r.git) y", "x (git+https://***@h/r.git) y"),
    ],
)
def test_the_scheme_starts_at_the_first_letter_of_its_run(text, shown):
    assert redact_text(text) == shown
