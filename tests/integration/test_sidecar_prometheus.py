"""A real Prometheus scrapes the sidecar, and `promtool check metrics` lints the exposition.

Both binaries come from Debian's `prometheus` package (scripts/setup.d/60-helm.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from typing import Any

import pytest

from tests.support.seaweed import free_ports
from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]


def query(port: int, expression: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            document = json.load(response)
    except OSError:
        return []
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


def test_prometheus_scrapes_the_sidecar(tmp_path):
    write_file(tmp_path / "data" / "a.txt", b"hello")
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
jobs: [{{name: backup, kind: backup, schedule: "@every 1s", run_on_start: true}}]
"""
    with Sidecar(tmp_path, [], config=config) as sidecar:
        exposition = sidecar.get("/metrics")[1]
        lint = subprocess.run(
            ["promtool", "check", "metrics"],
            input=exposition,
            text=True,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        assert lint.stdout + lint.stderr == ""

        prom_port = free_ports(1)[0]
        (tmp_path / "prometheus.yml").write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: caretaker
    static_configs: [{{targets: ["127.0.0.1:{sidecar.port}"]}}]
""")
        with (tmp_path / "prometheus.log").open("wb") as log:
            prometheus = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
            )
        try:
            runs = wait_until(
                lambda: query(prom_port, 'caretaker_job_runs_total{result="success"}'),
                30,
                "Prometheus to scrape caretaker",
            )
            up = query(prom_port, 'up{job="caretaker"}')
            snapshots = wait_until(
                lambda: query(prom_port, "caretaker_repository_snapshots >= 1"), 10, "the snapshot count"
            )
        finally:
            prometheus.terminate()
            prometheus.wait(15)
    assert runs[0]["metric"]["job"] == "caretaker"  # the scrape job, untouched without honor_labels
    assert runs[0]["metric"]["task"] == "backup"
    assert not any(name.startswith("exported_") for name in runs[0]["metric"])
    assert float(runs[0]["value"][1]) >= 1
    assert up[0]["value"][1] == "1"
    assert float(snapshots[0]["value"][1]) >= 1
