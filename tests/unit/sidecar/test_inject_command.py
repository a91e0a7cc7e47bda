"""`caretaker inject` on the command line: files and stdin, YAML on stdout, refusals on
stderr with exit 2, flags with their CARETAKER_* twins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from caretaker.cli import main

MANIFESTS = Path(__file__).parent / "manifests"
SHOP = str(MANIFESTS / "shop-deployment.yaml")
BASE = ["--repository", "s3://backups/shop", "--password-secret", "shop-password", "--log-format", "json"]


def _run(
    argv: list[str], capsys: pytest.CaptureFixture[str], env: dict[str, str] | None = None
) -> tuple[int, str, list[dict[str, Any]]]:
    code = main(["inject", *argv], env or {})
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    return code, captured.out, events


def test_writes_only_yaml_to_stdout_and_logs_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, events = _run([SHOP, "--volume", "shop-data", "--container", "shop", *BASE], capsys)
    assert code == 0
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["Service", "Deployment", "ConfigMap"]
    assert out.startswith("---\n")
    [done] = [e for e in events if e["event"] == "inject.done"]
    assert done["workloads"] == 1


def test_output_of_the_command_is_a_fixed_point(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    args = ["--volume", "shop-data", "--container", "shop", "--native", "--secret", "shop-s3", *BASE]
    _, first, _ = _run([SHOP, *args], capsys)
    injected = tmp_path / "injected.yaml"
    injected.write_text(first)
    code, second, _ = _run([str(injected), *args], capsys)
    assert code == 0
    assert second == first


def test_missing_volume_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, events = _run([SHOP, "--volume", "data", "--container", "shop", *BASE], capsys)
    assert code == 2
    assert out == ""
    [refused] = [e for e in events if e["event"] == "inject.refused"]
    assert refused["level"] == "error"
    assert any("--volume='data'" in p and "Deployment/shop" in p for p in refused["problems"])


def test_missing_container_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, events = _run([SHOP, "--volume", "shop-data", "--container", "web", *BASE], capsys)
    assert code == 2
    assert out == ""
    [refused] = [e for e in events if e["event"] == "inject.refused"]
    assert refused["problems"] == [
        "--container='web': Deployment/shop has no such container (it has: nginx, shop, log-shipper)"
    ]


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["/nonexistent/app.yaml", "--volume", "data"], "file='/nonexistent/app.yaml': No such file"),
        ([SHOP, "--volume", "shop-data", "--container", "shop", "--env", "NOEQUALS"], "--env='NOEQUALS'"),
        ([SHOP, "--volume", "shop-data", "--container", "shop", "--user", "nobody"], "--user='nobody'"),
    ],
    ids=["missing-file", "bad-env", "bad-user"],
)
def test_bad_input_exits_2(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, events = _run([*argv, *BASE], capsys)
    assert (code, out) == (2, "")
    assert any(problem in p for e in events for p in e.get("problems", []))


def test_invalid_yaml_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: Deployment\nspec: [unclosed\n")
    code, out, events = _run([str(broken), "--volume", "data", *BASE], capsys)
    assert (code, out) == (2, "")
    assert "not valid YAML" in events[-1]["problems"][0]


def test_flags_have_env_twins(capsys: pytest.CaptureFixture[str]) -> None:
    env = {
        "CARETAKER_VOLUME": "shop-data",
        "CARETAKER_CONTAINER": "shop",
        "CARETAKER_REPOSITORY": "s3://backups/from-env",
        "CARETAKER_NATIVE": "true",
        "CARETAKER_ENV": "CARETAKER_S3_REGION=eu-west-1,CARETAKER_S3_PATH_STYLE=true",
        "CARETAKER_PASSWORD_SECRET": "shop-password",
    }
    assert main(["inject", SHOP, "--log-format", "json"], env) == 0
    out = capsys.readouterr().out
    deployment = list(yaml.safe_load_all(out))[1]
    sidecar = deployment["spec"]["template"]["spec"]["initContainers"][1]
    env_values = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env_values["CARETAKER_REPOSITORY"] == "s3://backups/from-env"
    assert env_values["CARETAKER_S3_REGION"] == "eu-west-1"
    assert env_values["CARETAKER_S3_PATH_STYLE"] == "true"
    assert env_values["CARETAKER_PASSWORD_FILE"] == "/etc/caretaker/password/password"
    assert sidecar["restartPolicy"] == "Always"


def test_help_names_the_env_twins(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["inject", "--help"], {})
    text = capsys.readouterr().out
    for twin in ("CARETAKER_VOLUME", "CARETAKER_CONTAINER", "CARETAKER_SECRET", "CARETAKER_METRICS_PORT"):
        assert twin in text


@pytest.mark.integration
def test_pipeline_from_stdin_in_a_real_process() -> None:
    """`kubectl kustomize | caretaker inject - ... | kubectl apply -f -`: a real process."""
    argv = [sys.executable, "-m", "caretaker", "inject", "-", "--volume", "pgdata", *BASE]
    text = (MANIFESTS / "postgres-statefulset.yaml").read_text()
    result = subprocess.run(argv, input=text, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    [statefulset] = list(yaml.safe_load_all(result.stdout))
    assert [c["name"] for c in statefulset["spec"]["template"]["spec"]["containers"]] == [
        "postgres",
        "caretaker",
    ]
    refused = subprocess.run(
        [*argv[:6], "data", *BASE], input=text, capture_output=True, text=True, check=False, timeout=60
    )
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "pgdata" in refused.stderr


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ([], {}, "new-repository"),
        (["--allow-empty"], {}, "always"),
        (["--allow-empty", "never"], {}, None),
        ([], {"CARETAKER_ALLOW_EMPTY": "true"}, "always"),
    ],
    ids=["default", "flag-alone", "never", "older-boolean-twin"],
)
def test_first_start_defaults_to_a_new_repository_only(
    flags: list[str], env: dict[str, str], expected: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Like the chart: a first install on a never-used repository starts empty, once."""
    code, out, _ = _run([SHOP, "--volume", "shop-data", "--container", "shop", *BASE, *flags], capsys, env)
    assert code == 0
    deployment = next(d for d in yaml.safe_load_all(out) if d["kind"] == "Deployment")
    (restore,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == "caretaker-restore"
    ]
    variables = {e["name"]: e.get("value") for e in restore["env"]}
    assert variables.get("CARETAKER_ALLOW_EMPTY") == expected
