"""The user's health check runs without caretaker's credentials in its environment."""

from __future__ import annotations

import structlog

from restore.initcontainer.healthcheck import run_check


def test_the_check_sees_no_aws_or_caretaker_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-key-value")
    monkeypatch.setenv("CARETAKER_REPOSITORY", "s3://bucket/app")
    monkeypatch.setenv("APP_SETTING", "kept")
    out = tmp_path / "env.txt"
    assert run_check(["sh", "-c", f"env > {out}"], tmp_path, structlog.get_logger())
    seen = out.read_text()
    assert "APP_SETTING=kept" in seen
    assert "secret-key-value" not in seen
    assert "CARETAKER_" not in seen
