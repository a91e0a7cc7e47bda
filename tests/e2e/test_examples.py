"""The examples/ manifests run as pods with `podman kube play`, against SeaweedFS on the host.

Run here: examples/pod (test_pod.py), the rendered chart (test_chart_pod.py), webdav-git
(test_webdav_git.py), and below init-container, sidecar (classic), entrypoint-wrapper and
sqlite. The others cannot run under
podman 4.3 on this machine; each has a skipped case saying exactly why, and
`test_every_example_is_accounted_for` keeps a new example from being left out silently.

What the tests change in an example, besides the podman 4.3 patches of tests/e2e/pods.py
(`for_podman`: restartPolicy Never, host networking, no `ports`, named probe ports as numbers,
`optional: false` on Secret volumes, Secrets through `podman secret create`):
- the Secret's values: the test's keys and SeaweedFS endpoint; the repository URLs are kept
  (the test creates their bucket, `caretaker-demo`, on its SeaweedFS);
- listen addresses, because host networking puts them on the host: the app's port 8080 in
  its command becomes a free port on 127.0.0.1, and the sidecar gets `CARETAKER_LISTEN` on
  127.0.0.1 (its default `:9090` would bind every interface of the host).
The stand-in apps (a shell or python as PID 1, no SIGTERM handler) ignore SIGTERM, so a pod
stop would wait out the whole grace for them; the tests send SIGTERM to the caretaker container
alone (what the kubelet sends it too) and check its final backup and exit code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.podman import REPO, Podman
from tests.e2e.pods import (
    E2E_PASSWORD,
    KubePod,
    backups_done,
    for_podman,
    free_address,
    host_backup,
    host_snapshots,
    http_get,
    load_manifest,
    pod_spec,
    replace_in_command,
    scrape,
    set_env,
)
from tests.support.seaweed import SeaweedServer
from tests.support.sidecar import wait_until

pytestmark = pytest.mark.e2e

EXAMPLES = REPO / "examples"
DEMO_BUCKET = "caretaker-demo"  # the bucket every example's repository URL names

# How each folder of examples/ is run, or why it cannot run here.
ELSEWHERE = {
    "pod": "tests/e2e/test_pod.py runs examples/pod/pod.yaml",
    "chart-e2e-values.yaml": "tests/e2e/test_chart_pod.py runs the chart rendered with it",
    "prometheus": "not a pod: promtool checks and unit-tests it (tests/examples/test_prometheus.py)",
    "webdav-git": "tests/e2e/test_webdav_git.py runs manifests.yaml against a local sshd git host",
    "app-user": "tests/e2e/test_chart_pod.py runs the chart with its values.yaml",
    "grafana": (
        "not a pod: tests/integration/test_sidecar_prometheus.py queries every panel's expression "
        "against a real Prometheus scraping a sidecar"
    ),
}
RUN_HERE = (
    "init-container/pod.yaml",
    "sidecar/pod.yaml",
    "entrypoint-wrapper/pod.yaml",
    "sqlite/manifests.yaml",
)
CANNOT_RUN = {
    "poststart-hook/pod.yaml": (
        "podman 4.3 `kube play` ignores `lifecycle.postStart` (checked: a hook writing a file to a "
        "shared emptyDir never ran), so the restore this example runs in the hook would never run; "
        "it needs a kubelet"
    ),
    "sidecar/native.yaml": (
        "a native sidecar (init container with `restartPolicy: Always`) needs a kubelet >= 1.29: "
        "podman 4.3 ignores a container's restartPolicy and runs it as an ordinary init container "
        "to completion before starting the app (checked), so `caretaker sidecar`, which never "
        "exits, would keep `kube play` waiting and the app would never start"
    ),
    "chart-include": (
        "its values set `caretaker.sidecar.native: true`, a native sidecar, which podman 4.3 cannot "
        "run (see sidecar/native.yaml); tests/chart/test_include.py renders it with a real helm, and "
        "tests/e2e/test_chart_pod.py runs the same chart's init container and sidecar as a pod"
    ),
}

Played = Callable[[str], tuple[KubePod, str, str]]


@pytest.fixture(scope="module")
def demo_bucket(e2e_s3: SeaweedServer) -> str:
    e2e_s3.make_bucket(DEMO_BUCKET)
    return DEMO_BUCKET


@pytest.fixture
def example_pod(
    podman: Podman,
    caretaker_image: str,
    app_image: str,
    e2e_s3: SeaweedServer,
    demo_bucket: str,
    tmp_path: Path,
) -> Iterator[Played]:
    """An example ready to play, with the test's credentials and listen addresses;
    returns (pod, app address, sidecar address). Removed at the end, also on failure."""
    made: list[KubePod] = []

    def make(manifest: str) -> tuple[KubePod, str, str]:
        docs, secrets = for_podman(
            load_manifest(EXAMPLES / manifest),
            credentials={
                "AWS_ACCESS_KEY_ID": e2e_s3.access_key,
                "AWS_SECRET_ACCESS_KEY": e2e_s3.secret_key,
                "CARETAKER_PASSWORD": E2E_PASSWORD,
                "CARETAKER_S3_ENDPOINT": e2e_s3.endpoint,
            },
        )
        spec = pod_spec(docs)
        app, sidecar = free_address(), free_address()
        names = {container["name"] for container in spec["containers"]}
        if "app" in names and manifest != "sqlite/manifests.yaml":
            replace_in_command(spec, "app", r"\b8080\b", app)
        if "caretaker" in names:
            set_env(spec, "caretaker", "CARETAKER_LISTEN", sidecar)
        pod = KubePod(podman, tmp_path / f"{len(made)}-{Path(manifest).parent}.yaml", docs, secrets)
        pod.down()  # leftovers of an interrupted earlier run use the same names
        made.append(pod)
        return pod, app, sidecar

    yield make
    for pod in made:
        print(pod.diagnostics())  # shown by pytest only when the test failed
        pod.down()


def repository_of(manifest: str) -> str:
    """The repository URL the example names (in its Secret or in the restore's env)."""
    found = re.search(r"s3://caretaker-demo/[\w-]+", (EXAMPLES / manifest).read_text())
    assert found is not None
    return found.group(0)


def seed(e2e_s3: SeaweedServer, manifest: str, tmp_path: Path) -> str:
    """A snapshot for the example's init container to restore; returns the page it holds."""
    data = tmp_path / "seed"
    data.mkdir()
    page = f"restored page of {manifest}\n"
    (data / "index.html").write_text(page)
    host_backup(e2e_s3, repository_of(manifest), data)
    return page


def test_init_container_restores_before_the_app_starts(
    example_pod: Played, e2e_s3: SeaweedServer, tmp_path: Path
) -> None:
    """Way 1: the app container, unchanged, finds the restored data when it starts."""
    page = seed(e2e_s3, "init-container/pod.yaml", tmp_path)
    (snapshot,) = host_snapshots(e2e_s3, repository_of("init-container/pod.yaml"))
    pod, app, _ = example_pod("init-container/pod.yaml")

    code, output = pod.play()

    assert code == 0, output
    result = pod.restore_result("app")
    assert (result["outcome"], result["snapshot"]) == ("restored", snapshot["id"])
    assert wait_until(lambda: http_get(f"http://{app}/index.html"), 30, "the app's page") == page


def test_classic_sidecar_backs_up_on_sigterm(example_pod: Played, e2e_s3: SeaweedServer) -> None:
    """Way 3 (classic): restore init container (first boot), the sidecar beside the app,
    a final backup when it gets SIGTERM (its schedule, @every 5m, does not come round)."""
    pod, app, sidecar = example_pod("sidecar/pod.yaml")

    code, output = pod.play()

    assert code == 0, output
    assert pod.restore_result("app")["outcome"] == "first-boot"
    wait_until(lambda: http_get(f"http://{app}/log.txt"), 30, "the app's first line")
    samples = wait_until(lambda: scrape(sidecar), 30, "the sidecar's metrics")
    assert samples[("caretaker_restore_outcome", (("outcome", "first-boot"),))] == 1
    scheduled = backups_done(sidecar)
    assert pod.stop_container("caretaker") < 25, "within the sidecar's shutdown grace"
    assert pod.exit_code("caretaker") == 0
    assert len(host_snapshots(e2e_s3, repository_of("sidecar/pod.yaml"))) == scheduled + 1


def test_entrypoint_wrapper_starts_the_app_after_the_restore(
    example_pod: Played, podman: Podman, e2e_s3: SeaweedServer, tmp_path: Path
) -> None:
    """Way 4: the app's command waits for caretaker's marker, logs the outcome, then execs
    the app, which serves the restored page; caretaker turns into the sidecar."""
    page = seed(e2e_s3, "entrypoint-wrapper/pod.yaml", tmp_path)
    pod, app, sidecar = example_pod("entrypoint-wrapper/pod.yaml")

    code, output = pod.play()

    assert code == 0, output
    log = wait_until(
        lambda: "data ready" in (text := podman.logs(pod.container("app"))) and text,
        30,
        "the wrapper's message",
    )
    assert re.search(
        r"wait-for-restore: data ready after \d+s: .*\"outcome\": \"restored\"", log, re.DOTALL
    ), log
    assert wait_until(lambda: http_get(f"http://{app}/index.html"), 30, "the app's page") == page
    samples = wait_until(lambda: scrape(sidecar), 30, "the sidecar's metrics")
    assert samples[("caretaker_restore_outcome", (("outcome", "restored"),))] == 1
    pod.stop_container("caretaker")  # tini, PID 1, forwards SIGTERM to the sidecar
    assert pod.exit_code("caretaker") == 0


def test_sqlite_consistent_copy_survives_a_new_volume(example_pod: Played, e2e_s3: SeaweedServer) -> None:
    """The `before` hook copies the live database at the final backup; on a new, empty
    volume the restore checks the copy (`--check-cmd`), promote-copy puts it in place, and
    the app starts with the rows it had."""
    repository = repository_of("sqlite/manifests.yaml")
    pod, _, sidecar = example_pod("sqlite/manifests.yaml")
    assert "sqlite-demo-data" in pod.volumes(), "the claim is a podman volume, removed by down()"

    code, output = pod.play()
    assert code == 0, output
    assert pod.restore_result("caretaker")["outcome"] == "first-boot"
    wait_until(lambda: scrape(sidecar), 30, "the sidecar's metrics")
    rows = wait_until(lambda: row_count(pod) >= 3 and row_count(pod), 30, "three rows")
    pod.stop_container("caretaker")
    assert pod.exit_code("caretaker") == 0
    log = pod.podman.logs(pod.container("caretaker"))
    assert "copied /data/app.db to /data/backup/app.db" in log, "the before hook ran"
    assert len(host_snapshots(e2e_s3, repository)) == 1, "the final backup (the schedule is */15)"

    pod.down()  # the pod and its volume (the claim) go
    code, output = pod.play()
    assert code == 0, output
    assert pod.restore_result("caretaker")["outcome"] == "restored"
    started = wait_until(lambda: rows_at_start(pod), 30, "the app's first line")
    assert started >= rows, "the copy taken at the final backup holds at least what we saw"


def row_count(pod: KubePod) -> int:
    """Rows in the live database, read with the app's own python."""
    query = "import sqlite3; print(sqlite3.connect('/data/app.db').execute('select count(*) from ticks').fetchone()[0])"
    done = pod.podman.run("exec", pod.container("app"), "python3", "-c", query, check=False)
    return int(done.stdout) if done.returncode == 0 else 0


def rows_at_start(pod: KubePod) -> int | None:
    found = re.search(r"rows at start: (\d+)", pod.podman.logs(pod.container("app")))
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("example", sorted(CANNOT_RUN))
def test_cannot_run_here(example: str) -> None:
    pytest.skip(f"examples/{example}: {CANNOT_RUN[example]}")


def test_every_example_is_accounted_for() -> None:
    """Every entry of examples/ is run here, run elsewhere, or skipped with its reason."""
    covered = {name.split("/")[0] for name in (*RUN_HERE, *CANNOT_RUN, *ELSEWHERE)}
    present = {path.name for path in EXAMPLES.iterdir() if path.name != "README.md"}
    assert present == covered
    for manifest in RUN_HERE:
        assert (EXAMPLES / manifest).is_file()
