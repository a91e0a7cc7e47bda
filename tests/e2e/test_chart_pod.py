"""charts/caretaker rendered by a real `helm template` with examples/chart-e2e-values.yaml and
run as a pod with `podman kube play`, against SeaweedFS on the host: the restore init container
first-boots on an empty repository, the backup sidecar backs up (a snapshot in the bucket,
`caretaker_job_runs_total{task="backup",result="success"}` scraped from the host), and stopping
the pod (SIGTERM, SIGKILL after terminationGracePeriodSeconds) lets the sidecar take its final
backup and exit 0 on its own. The chart's `helm test` Pod, played beside it, passes while the
sidecar is ready and fails once it is gone. examples/app-user (an app running as its own uid,
caretaker as the same user) gets its private files back in a new pod.

The test's values (`--set`): its SeaweedFS endpoint, bucket, Secret name and a free port for
the sidecar (`sidecar.port`, and `CARETAKER_LISTEN` on 127.0.0.1 through `extraEnv`: with host
networking the chart's `listen: ":PORT"` would bind every interface of the host), and the
metrics Service (for the `helm test` Pod, which asks /readyz through it: without cluster DNS
the test points it at the sidecar's address on the host instead; the Service itself is not
played). The podman 4.3 patches of the rendered Deployment are the ones the values file's
header names, applied by tests/e2e/pods.py (`for_podman`): restartPolicy Never, no `ports`,
named probe ports as numbers, the Secret created with `podman secret create`; `hostNetwork`
comes from the values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chart.kube import CHART, EXAMPLES, load_documents, run, tool
from tests.e2e.podman import Podman, project_version
from tests.e2e.pods import (
    BACKUP_SUCCESS,
    E2E_PASSWORD,
    KubePod,
    backups_done,
    for_podman,
    host_snapshots,
    replace_in_command,
    scrape,
)
from tests.support.seaweed import SeaweedServer, free_ports
from tests.support.sidecar import wait_until

pytestmark = pytest.mark.e2e

VALUES = EXAMPLES / "chart-e2e-values.yaml"
APP_USER = EXAMPLES / "app-user" / "values.yaml"
SECRET = "caretaker-e2e-s3"
PASSWORD_SECRET = "caretaker-e2e-password"
RELEASE = "e2e"
HELM_TEST_HOOK = "test"


def render(e2e_s3: SeaweedServer, repository: str, port: int, *files: Path) -> list[dict[str, Any]]:
    strings = {
        "image.tag": project_version(),
        "repository.url": repository,
        "repository.s3.endpoint": e2e_s3.endpoint,
        "credentials.existingSecret": SECRET,
        "encryption.passwordSecret": PASSWORD_SECRET,
        "extraEnv[0].name": "CARETAKER_LISTEN",
        "extraEnv[0].value": f"127.0.0.1:{port}",
    }
    argv = [tool("helm"), "template", RELEASE, str(CHART)]
    for path in (VALUES, *files):
        argv += ["--values", str(path)]
    argv += ["--set", f"sidecar.port={port}", "--set", "metrics.service.enabled=true"]
    for key, value in strings.items():
        argv += ["--set-string", f"{key}={value}"]
    return load_documents(run(argv).stdout)


def is_helm_test(doc: dict[str, Any]) -> bool:
    return bool(doc["metadata"].get("annotations", {}).get("helm.sh/hook") == HELM_TEST_HOOK)


@pytest.fixture
def chart_pods(
    podman: Podman, caretaker_image: str, app_image: str, e2e_s3: SeaweedServer, bucket: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[KubePod, KubePod, str, str]]]:
    """Render the chart with more value files: (pod, helm test pod, repository URL, sidecar
    address), ready to play. All removed at the end (pods, volumes, secret), also on failure."""
    made: list[KubePod] = []

    def make(*files: Path) -> tuple[KubePod, KubePod, str, str]:
        (port,) = free_ports(1)
        repository = f"s3://{bucket}/chart-{len(made)}"
        rendered = render(e2e_s3, repository, port, *files)
        hooks = [doc for doc in rendered if is_helm_test(doc)]
        workload = [doc for doc in rendered if not is_helm_test(doc) and doc["kind"] != "Service"]
        assert [doc["kind"] for doc in workload] == ["ConfigMap", "Deployment"]
        docs, secrets = for_podman(workload)
        # The chart names an existing Secret (credentials.existingSecret); the test creates it.
        secrets[SECRET] = {
            "stringData": {"AWS_ACCESS_KEY_ID": e2e_s3.access_key, "AWS_SECRET_ACCESS_KEY": e2e_s3.secret_key}
        }
        secrets[PASSWORD_SECRET] = {"stringData": {"password": E2E_PASSWORD}}  # a Secret volume
        pod = KubePod(podman, tmp_path / f"chart-{len(made)}.yaml", docs, secrets)
        (hook,) = hooks
        test_docs, _ = for_podman([hook])
        replace_in_command(
            test_docs[0]["spec"],
            "readyz",
            rf"^http://{RELEASE}-caretaker-metrics:\d+/",
            f"http://127.0.0.1:{port}/",
        )
        helm_test = KubePod(podman, tmp_path / f"helm-test-{len(made)}.yaml", test_docs, {})
        for each in (pod, helm_test):
            each.down()  # leftovers of an interrupted earlier run use the same names
            made.append(each)
        return pod, helm_test, repository, f"127.0.0.1:{port}"

    yield make
    for pod in made:
        print(pod.diagnostics())  # shown by pytest only when the test failed
        pod.down()


def run_helm_test(helm_test: KubePod) -> tuple[int, str]:
    """Play the `helm test` Pod once (again); return its exit code and log."""
    helm_test.down()
    code, output = helm_test.play()
    assert code == 0, output
    container = helm_test.container("readyz")
    exit_code = int(helm_test.podman.run("wait", container, timeout=60).stdout.strip())
    return exit_code, helm_test.podman.logs(container)


def test_rendered_chart_first_boots_backs_up_and_stops_cleanly(
    chart_pods: Callable[..., tuple[KubePod, KubePod, str, str]], podman: Podman, e2e_s3: SeaweedServer
) -> None:
    pod, helm_test, repository, listen = chart_pods()
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
    samples = scrape(listen)
    assert samples is not None
    scheduled = samples[BACKUP_SUCCESS]
    unchanged = samples[("caretaker_backup_unchanged_total", (("kind", "backup"), ("task", "backup")))]
    snapshots = host_snapshots(e2e_s3, repository)
    assert len(snapshots) == scheduled - unchanged  # a run that found nothing new records nothing
    assert pod.read("app", "/data/www/started"), "the app started after the restore and wrote"
    # `helm test`: the sidecar is ready.
    code, log = run_helm_test(helm_test)
    assert code == 0, log
    assert re.search(r"/readyz 200 ", log), log

    # The next scheduled backup is 15 s away: stopping now, only the final backup on SIGTERM
    # can add a snapshot, and it does as the app wrote since (the chart's backup job skips
    # unchanged folders). The app (a shell as PID 1) ignores SIGTERM and is killed after the
    # grace; the sidecar must have exited 0 by itself before that.
    podman.run("exec", pod.container("app"), "sh", "-c", "echo last > /data/www/last-words")
    pod.stop()
    assert pod.exit_code("caretaker") == 0
    assert '"event": "shutdown.done"' in podman.logs(pod.container("caretaker"))
    assert len(host_snapshots(e2e_s3, repository)) == len(snapshots) + 1
    # `helm test` with the sidecar gone fails and says why.
    code, log = run_helm_test(helm_test)
    assert code == 1, log
    assert "/readyz: <urlopen error [Errno 111] Connection refused>" in log


def test_an_app_running_as_its_own_user_gets_its_private_files_back(
    chart_pods: Callable[..., tuple[KubePod, KubePod, str, str]], podman: Podman
) -> None:
    """examples/app-user: the app (uid 1000, umask 077) and caretaker as the same user. The
    sidecar backs up files only that user may read; a new pod's restore gives them back
    owned by it with their modes, and the app appends to them."""
    pod, _, _, listen = chart_pods(APP_USER)

    code, output = pod.play()
    assert code == 0, output
    assert pod.restore_result("app")["outcome"] == "first-boot"
    wait_until(lambda: backups_done(listen) >= 1, 30, "the sidecar's first backup")
    pod.stop()
    assert pod.exit_code("caretaker") == 0
    pod.down()

    code, output = pod.play()
    assert code == 0, output
    assert pod.restore_result("app")["outcome"] == "restored"
    log = wait_until(
        lambda: "start number" in (text := podman.logs(pod.container("app"))) and text, 30, "the app"
    )
    assert "started as 1000:1000, start number 2" in log, "the app wrote to its restored journal"
    script = "stat -c '%u:%g %a %n' /data/private /data/private/journal.txt"
    owners = podman.run("exec", pod.container("app"), "sh", "-c", script).stdout.splitlines()
    assert owners == ["1000:1000 700 /data/private", "1000:1000 600 /data/private/journal.txt"]
