"""The Prometheus example: alert rules checked and unit-tested with promtool, kept
identical to the chart's PrometheusRule, and scrape configs that match the pods."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from caretaker.inject.manifests import METRICS_PORT_NAME
from tests.chart.kube import EXAMPLES, one, promtool, render

pytestmark = pytest.mark.integration

PROMETHEUS = EXAMPLES / "prometheus"


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(PROMETHEUS / "caretaker-rules.yaml"))
    assert "SUCCESS: 5 rules found" in result.stdout


def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(PROMETHEUS / "caretaker-rules.test.yaml"))
    assert "SUCCESS" in result.stdout


def test_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule test that expects the wrong thing fails: promtool really evaluates them."""
    shutil.copy(PROMETHEUS / "caretaker-rules.yaml", tmp_path)
    tests = yaml.safe_load((PROMETHEUS / "caretaker-rules.test.yaml").read_text())
    tests["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [{"exp_labels": {"job": "backup"}}]
    broken = tmp_path / "broken.test.yaml"
    broken.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(broken), check=False)
    assert result.returncode != 0
    assert "CaretakerBackupTooOld" in result.stdout + result.stderr


def test_rules_are_the_charts_rules_unscoped() -> None:
    values = {"metrics": {"prometheusRule": {"enabled": True, "scopeToRelease": False}}}
    rule = one(render(values), "PrometheusRule")
    example = yaml.safe_load((PROMETHEUS / "caretaker-rules.yaml").read_text())
    assert example == {"groups": rule["spec"]["groups"]}


def test_prometheus_config_passes_promtool() -> None:
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert "is valid prometheus config file syntax" in result.stdout


def test_scrape_configs_need_no_honor_labels_and_find_the_port() -> None:
    static = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    discovered = yaml.safe_load((PROMETHEUS / "scrape-kubernetes-sd.yml").read_text())
    for config in (static, discovered):
        [job] = config["scrape_configs"]
        assert "honor_labels" not in job  # no label of caretaker's collides with the target's
    [keep] = [r for r in discovered["scrape_configs"][0]["relabel_configs"] if r.get("action") == "keep"]
    assert keep["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
    assert keep["regex"] == METRICS_PORT_NAME == "ct-metrics"
