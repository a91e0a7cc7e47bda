"""charts/caretaker rendered by a real `helm template` with examples/chart-e2e-values.yaml and
run as a pod with `podman kube play`, against SeaweedFS on the host: the restore init container
first-boots on an empty repository, the backup sidecar backs up (a snapshot in the bucket,
`caretaker_job_runs_total{job="backup",result="success"}` scraped from the host), and stopping
the pod (SIGTERM, SIGKILL after terminationGracePeriodSeconds) lets the sidecar take its final
backup and exit 0 on its own.

The test's values (`--set`): its SeaweedFS endpoint, bucket, Secret name and a free port for
the sidecar (`sidecar.port`, and `CARETAKER_LISTEN` on 127.0.0.1 through `extraEnv`: with host
networking the chart's `listen: ":PORT"` would bind every interface of the host). The podman 4.3
patches of the rendered Deployment are the ones the values file's header names, applied by
tests/e2e/pods.py (`for_podman`): restartPolicy Never, no `ports`, named probe ports as numbers,
the Secret created with `podman secret create`; `hostNetwork` comes from the values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chart.kube import CHART, EXAMPLES, load_documents, run, tool
from tests.e2e.podman import Podman, project_version
from tests.e2e.pods import KubePod, backups_done, for_podman, host_snapshots, scrape
from tests.support.seaweed import SeaweedServer, free_ports
from tests.support.sidecar import wait_until

pytestmark = pytest.mark.e2e

VALUES = EXAMPLES / "chart-e2e-values.yaml"
SECRET = "caretaker-e2e-s3"
RELEASE = "e2e"


def render(e2e_s3: SeaweedServer, repository: str, port: int) -> list[dict[str, object]]:
    strings = {
        "image.tag": project_version(),
        "repository.url": repository,
        "repository.s3.endpoint": e2e_s3.endpoint,
        "credentials.envSecret": SECRET,
        "extraEnv[0].name": "CARETAKER_LISTEN",
        "extraEnv[0].value": f"127.0.0.1:{port}",
    }
    argv = [
        tool("helm"),
        "template",
        RELEASE,
        str(CHART),
        "--values",
        str(VALUES),
        "--set",
        f"sidecar.port={port}",
    ]
    for key, value in strings.items():
        argv += ["--set-string", f"{key}={value}"]
    return load_documents(run(argv).stdout)


@pytest.fixture
def chart_pod(
    podman: Podman, caretaker_image: str, app_image: str, e2e_s3: SeaweedServer, bucket: str, tmp_path: Path
) -> Iterator[tuple[KubePod, str, str]]:
    """The rendered chart, ready to play; (pod, repository URL, sidecar address). Removed at
    the end (pod, volumes, secret), also when the test fails."""
    (port,) = free_ports(1)
    repository = f"s3://{bucket}/chart"
    rendered = render(e2e_s3, repository, port)
    assert [doc["kind"] for doc in rendered] == ["ConfigMap", "Deployment"]
    docs, secrets = for_podman(rendered)
    # The chart names an existing Secret (credentials.envSecret); the test creates it.
    secrets[SECRET] = {
        "stringData": {"AWS_ACCESS_KEY_ID": e2e_s3.access_key, "AWS_SECRET_ACCESS_KEY": e2e_s3.secret_key}
    }
    pod = KubePod(podman, tmp_path / "chart.yaml", docs, secrets)
    pod.down()  # leftovers of an interrupted earlier run use the same names
    try:
        yield pod, repository, f"127.0.0.1:{port}"
    finally:
        print(pod.diagnostics())  # shown by pytest only when the test failed
        pod.down()


def test_rendered_chart_first_boots_backs_up_and_stops_cleanly(
    chart_pod: tuple[KubePod, str, str], podman: Podman, e2e_s3: SeaweedServer
) -> None:
    pod, repository, listen = chart_pod
    assert pod.name == f"{RELEASE}-caretaker-pod-0"

    code, output = pod.play()
    assert code == 0, output
    # The init container ran first, on an empty repository: first boot (allowEmpty).
    assert pod.restore_result("app")["outcome"] == "first-boot"
    # The sidecar backs up at once (run_on_start) and reports it, and the restore's outcome.
    wait_until(lambda: backups_done(listen) >= 1, 30, "the sidecar's first backup")
    samples = scrape(listen)
    assert samples is not None
    assert samples[("caretaker_restore_outcome", (("outcome", "first-boot"),))] == 1
    scheduled = backups_done(listen)
    snapshots = host_snapshots(e2e_s3, repository)
    assert len(snapshots) == scheduled
    assert pod.read("app", "/data/www/started"), "the app started after the restore and wrote"

    # The next scheduled backup is 15 s away: stopping now, only the final backup on SIGTERM
    # can add a snapshot. The app (a shell as PID 1) ignores SIGTERM and is killed after the
    # grace; the sidecar must have exited 0 by itself before that.
    pod.stop()
    assert pod.exit_code("caretaker") == 0
    assert '"event": "shutdown.done"' in podman.logs(pod.container("caretaker"))
    assert len(host_snapshots(e2e_s3, repository)) == scheduled + 1
