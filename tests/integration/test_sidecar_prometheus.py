"""A real Prometheus scrapes a real sidecar: `promtool check metrics` lints the exposition,
the series arrive with caretaker's labels untouched (no `honor_labels`), and every query of
the Grafana dashboard (chart and examples/) parses and returns series.

Both binaries come from Debian's `prometheus` package (scripts/setup.d/60-helm.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from restore.initcontainer.outcome import Outcome, write_result
from tests.support.seaweed import free_ports
from tests.support.sidecar import Sidecar, wait_until
from tests.support.trees import write_file

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "charts" / "caretaker" / "dashboards" / "caretaker.json"
# What Grafana fills in; a scrape every second makes a minute a long window.
VARIABLES = {"$namespace": ".*", "$pod": ".*", "$__rate_interval": "1m"}


def query(port: int, expression: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            document: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:
        body = error.read()
        if error.code == 503:  # still starting
            return {"status": "unreachable", "data": {"result": []}}
        document = json.loads(body)  # a query Prometheus refused says why (400)
    except OSError:
        return {"status": "unreachable", "data": {"result": []}}
    return document


def results(port: int, expression: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = query(port, expression)["data"]["result"]
    return found


class Scraped:
    def __init__(self, sidecar: Sidecar, port: int) -> None:
        self.sidecar = sidecar
        self.port = port


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A sidecar that backed up (and recorded a restore), and a Prometheus scraping it."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    write_file(tmp_path / "data" / "a.txt", b"hello")
    finished = datetime.now(UTC)
    write_result(
        tmp_path / "data",
        Outcome(
            outcome="restored", exit_code=0, finished_at=finished, files=1, bytes=5, duration_seconds=0.5
        ),
    )
    config = f"""
repository: file://{tmp_path}/repo
path: {tmp_path}/data
rpo: 1h
jobs: [{{name: backup, kind: backup, schedule: "@every 1s", run_on_start: true, skip_unchanged: true}}]
"""
    prom_port = free_ports(1)[0]
    with Sidecar(tmp_path, [], config=config) as sidecar:
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
            # Two scrapes after a second backup: enough for rate() and increase().
            wait_until(
                lambda: (
                    results(prom_port, 'caretaker_job_runs_total{result="success"} >= 2')
                    and results(prom_port, "count_over_time(caretaker_build_info[1m]) >= 3")
                ),
                30,
                "Prometheus to scrape caretaker",
            )
            yield Scraped(sidecar, prom_port)
        finally:
            prometheus.terminate()
            prometheus.wait(15)


def test_the_exposition_passes_promtool(scraped: Scraped) -> None:
    exposition = scraped.sidecar.get("/metrics")[1]
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


def test_prometheus_keeps_caretakers_labels_without_honor_labels(scraped: Scraped) -> None:
    runs = results(scraped.port, 'caretaker_job_runs_total{result="success"}')
    up = results(scraped.port, 'up{job="caretaker"}')
    snapshots = results(scraped.port, "caretaker_repository_snapshots >= 1")
    assert runs[0]["metric"]["job"] == "caretaker"  # the scrape job, untouched without honor_labels
    assert runs[0]["metric"]["task"] == "backup"
    assert not any(name.startswith("exported_") for name in runs[0]["metric"])
    assert float(runs[0]["value"][1]) >= 1
    assert up[0]["value"][1] == "1"
    assert float(snapshots[0]["value"][1]) >= 1


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    document = json.loads(path.read_text())
    return [(panel["title"], target["expr"]) for panel in document["panels"] for target in panel["targets"]]


def test_the_example_dashboard_is_the_charts() -> None:
    assert (REPO / "examples" / "grafana" / "caretaker.json").read_text() == DASHBOARD.read_text()


def test_every_dashboard_query_parses_and_returns_series(scraped: Scraped) -> None:
    checked = 0
    for title, template in dashboard_queries(DASHBOARD):
        expression = template
        for name, value in VARIABLES.items():
            expression = expression.replace(name, value)
        answer = query(scraped.port, expression)
        assert answer["status"] == "success", f"{title}: {expression}: {answer}"
        assert answer["data"]["result"], f"{title}: {expression} returned no series"
        checked += 1
    assert checked >= 12


def test_a_broken_query_would_be_caught(scraped: Scraped) -> None:
    """The check above can fail: a typo does not parse, an unknown metric returns nothing."""
    assert query(scraped.port, "sum by (task (caretaker_job_runs_total)")["status"] == "error"
    assert results(scraped.port, "caretaker_job_runz_total") == []
