"""No secret reaches a log line at any level, an HTTP response, the restore result file or the
termination log. Runs at `--log-level debug` against a real SeaweedFS and real sidecar and
restore processes, with secrets planted where they reach caretaker in practice: the S3 secret
key and the repository's password in the environment, an STS session token in the environment (SeaweedFS rejects it, so
those runs fail — after botocore signed and sent requests carrying it), credentials in
repository URLs, a token in hook URLs and in a redirect's target, tokens in notification and
heartbeat URLs. Everything printed is searched for every planted value."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import S3_TEST_TUNING
from tests.support.cli import run_caretaker
from tests.support.seaweed import SeaweedServer
from tests.support.sidecar import App, Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = pytest.mark.integration

SESSION_TOKEN = "planted-session-token-7f3a"
HOOK_TOKEN = "planted-hook-token-19c2"
REDIRECT_TOKEN = "planted-redirect-token-5d8e"
URL_SECRET = "planted/url+secret-0b4d"  # with a slash, as AWS secret keys may have
GIT_TOKEN = "planted-git-token-2a6f"
NOTIFY_TOKEN = "planted-notify-token-8e1b"
PASSWORD = "planted-repository-password-3c1e"
# A request's Authorization header (signature and credential scope) in botocore's debug log.
SIGNED_HEADER = "AWS4-HMAC-SHA256"

SIDECAR_CONFIG = """
repository: {url}
path: {d}/data
defaults: {{retries: 0}}
jobs:
  - name: backup
    kind: backup
    schedule: "@every 1s"
    run_on_start: true
    before: [{{http: {{url: "{app}/flush?token={hook}", method: POST}}}}]
  - {{name: env, kind: command, schedule: "@every 1h", run_on_start: true,
     command: [sh, -c, "env | grep -E '^(AWS|CARETAKER)_' || echo none"]}}
  - {{name: notify, kind: http, schedule: "@every 1h", run_on_start: true, method: POST,
     url: "{app}/moved?token={hook}"}}
"""


def planted(server: SeaweedServer) -> list[str]:
    return [
        server.secret_key,
        SESSION_TOKEN,
        HOOK_TOKEN,
        REDIRECT_TOKEN,
        URL_SECRET,
        URL_SECRET.split("/")[1],
        GIT_TOKEN,
        NOTIFY_TOKEN,
        PASSWORD,
        SIGNED_HEADER,
    ]


def assert_clean(server: SeaweedServer, **texts: str) -> None:
    found = {where: [s for s in planted(server) if s in text] for where, text in texts.items()}
    assert not any(found.values()), {where: leaked for where, leaked in found.items() if leaked}


def http_texts(sidecar: Sidecar) -> dict[str, str]:
    return {path.strip("/"): sidecar.get(path)[1] for path in ("/status", "/readyz", "/metrics", "/healthz")}


@pytest.fixture(scope="module")
def s3(s3_server: SeaweedServer) -> tuple[SeaweedServer, str, dict[str, str]]:
    bucket = f"sweep-{uuid.uuid4().hex[:8]}"
    s3_server.make_bucket(bucket)
    env = {**s3_server.env(), **S3_TEST_TUNING, "CARETAKER_PASSWORD": PASSWORD}
    return s3_server, f"s3://{bucket}/{uuid.uuid4().hex[:8]}", env


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with App() as server:
        server.redirects[f"/moved?token={HOOK_TOKEN}"] = server.url(f"/login?token={REDIRECT_TOKEN}")
        yield server


def sidecar_in(tmp_path: Path, url: str, app: App, env: dict[str, str]) -> Sidecar:
    write_file(tmp_path / "data" / "app.db", b"state" * 100)
    config = SIDECAR_CONFIG.format(url=url, d=tmp_path, app=app.url("").rstrip("/"), hook=HOOK_TOKEN)
    notify = {
        "CARETAKER_NOTIFY": app.url(f"/hook/{NOTIFY_TOKEN}").replace("http://", f"json://u:{NOTIFY_TOKEN}@"),
        "CARETAKER_HEARTBEAT_URL": app.url(f"/hc/{NOTIFY_TOKEN}"),
    }
    return Sidecar(tmp_path, ["--log-level", "debug"], env={**env, **notify}, config=config)


def job_result(sidecar: Sidecar, job: str, result: str) -> float:
    kind = {"backup": "backup", "env": "command", "notify": "http"}[job]
    return sidecar.value("caretaker_job_runs_total", task=job, kind=kind, result=result)


def test_a_working_sidecar_prints_no_secret(tmp_path, s3, app):
    server, url, env = s3
    with sidecar_in(tmp_path, url, app, env) as sidecar:
        wait_until(
            lambda: (
                job_result(sidecar, "backup", "success") >= 2
                and job_result(sidecar, "env", "success") == 1
                and job_result(sidecar, "notify", "failure") == 1
            ),
            30,
            "backups, the env command and the redirected call",
        )
        wait_until(lambda: sidecar.events("notify.sent"), 15, "the failure's notification")
        texts = http_texts(sidecar)
        status = sidecar.status()
        assert sidecar.stop() == 0
    log = sidecar.log_text()
    assert_clean(server, log=log, **texts)
    # What was printed instead, redacted:
    (notify,) = [job for job in status["jobs"] if job["name"] == "notify"]
    assert "/login?token=*** " in notify["last_run"]["error"] + " "
    assert [e["line"] for e in sidecar.events("command.output", job="env")] == ["CARETAKER_JOB=env"]
    assert sidecar.events("hook.start", job="backup")[0]["url"].endswith("/flush?token=***")
    assert ("POST", f"/flush?token={HOOK_TOKEN}") in app.requests  # the real URL was used
    assert ("POST", f"/hook/{NOTIFY_TOKEN}") in app.requests  # the notification was sent
    assert ("POST", f"/hc/{NOTIFY_TOKEN}") in app.requests  # and the backups' heartbeat
    assert sidecar.events("http.request")  # debug events were on


def test_a_session_token_is_never_printed(tmp_path, s3, app):
    server, url, env = s3
    with sidecar_in(tmp_path, url, app, {**env, "AWS_SESSION_TOKEN": SESSION_TOKEN}) as sidecar:
        wait_until(lambda: job_result(sidecar, "backup", "failure") >= 1, 30, "a rejected backup")
        wait_until(lambda: sidecar.get("/readyz")[0] == 503, 15, "/readyz to fail")
        texts = http_texts(sidecar)
        assert sidecar.stop() == 0
    assert "S3 rejected the credentials" in texts["readyz"]
    assert_clean(server, log=sidecar.log_text(), **texts)


def restore_into(tmp_path: Path, name: str, url: str, env: dict[str, str]) -> dict[str, str]:
    target = tmp_path / name
    target.mkdir()
    termination = tmp_path / f"{name}.termination-log"
    done = run_caretaker(
        "restore",
        "--repository",
        url,
        "--path",
        str(target),
        "--timeout",
        "5s",
        "--termination-log",
        str(termination),
        "--log-level",
        "debug",
        environ=env,
    )
    result = target / ".caretaker" / "restore-result.json"
    return {
        "exit_code": str(done.returncode),
        "stdout": done.stdout,
        "stderr": done.stderr,
        "result": result.read_text(encoding="utf-8"),
        "termination": termination.read_text(encoding="utf-8"),
    }


def test_restores_print_no_secret_whether_they_succeed_or_fail(tmp_path, s3, app):
    server, url, env = s3
    with sidecar_in(tmp_path / "source", url, app, env) as sidecar:
        wait_until(lambda: job_result(sidecar, "backup", "success") >= 1, 30, "a backup to restore")
    bucket = url.removeprefix("s3://").split("/")[0]
    runs = {
        "restored": restore_into(tmp_path, "restored", url, env),
        "token": restore_into(tmp_path, "token", url, {**env, "AWS_SESSION_TOKEN": SESSION_TOKEN}),
        "s3-url": restore_into(tmp_path, "s3-url", f"s3://AKIDPLANTED:{URL_SECRET}@{bucket}/x", env),
        "git-url": restore_into(tmp_path, "git-url", f"git+https://{GIT_TOKEN}@127.0.0.1:9/r.git", env),
    }
    assert {name: run["exit_code"] for name, run in runs.items()} == {
        "restored": "0",
        "token": "5",
        "s3-url": "2",
        "git-url": "2",
    }
    for name, run in runs.items():
        assert_clean(server, **{f"{name} {where}": text for where, text in run.items()})
    assert json.loads(runs["restored"]["result"])["outcome"] == "restored"
    assert "AWS_SECRET_ACCESS_KEY_FILE" in json.loads(runs["s3-url"]["result"])["error"]
    assert "s3://***@" in runs["s3-url"]["termination"]
    assert "CARETAKER_GIT_TOKEN_FILE" in runs["git-url"]["termination"]


def test_a_sidecar_refuses_credentials_in_its_repository_url(tmp_path, s3, app):
    server, url, env = s3
    bucket = url.removeprefix("s3://").split("/")[0]
    sidecar = sidecar_in(tmp_path, f"s3://AKIDPLANTED:{URL_SECRET}@{bucket}/x", app, env)
    sidecar.start(wait_healthy=False)
    assert sidecar.wait(30) == 2
    log = sidecar.log_text()
    assert "AWS_SECRET_ACCESS_KEY_FILE" in log
    assert_clean(server, log=log)
