"""examples/pod/pod.yaml run as a real pod with `podman kube play`, against SeaweedFS on the
host: the init container first-boots on an empty repository, the app starts and writes, the
sidecar backs up on its `@every` schedule and once more on SIGTERM, and exits 0 in time; a
new pod on a new, empty volume gets the data back before its app starts; a pod whose
repository is unreachable never starts its app.

What the test changes in the example, and why, is in tests/e2e/pods.py (`for_podman`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.podman import BUSYBOX_IMAGE, REPO, Podman
from tests.e2e.pods import (
    E2E_PASSWORD,
    RESULT_FILE,
    KubePod,
    backups_done,
    for_podman,
    free_address,
    host_snapshots,
    http_get,
    load_manifest,
    scrape,
)
from tests.support.seaweed import SeaweedServer, free_ports
from tests.support.sidecar import Samples, wait_until

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples/pod/pod.yaml"
EVERY_SECONDS = 5
MakePod = Callable[[dict[str, str], str], KubePod]


@pytest.fixture
def make_pod(
    podman: Podman, caretaker_image: str, app_image: str, e2e_s3: SeaweedServer, tmp_path: Path
) -> Iterator[MakePod]:
    """Pods from the example with the given ConfigMap settings and app address; all removed
    at the end."""
    played: list[KubePod] = []

    def make(settings: dict[str, str], app_listen: str) -> KubePod:
        docs, secrets = for_podman(
            load_manifest(EXAMPLE),
            settings=settings,
            credentials={
                "AWS_ACCESS_KEY_ID": e2e_s3.access_key,
                "AWS_SECRET_ACCESS_KEY": e2e_s3.secret_key,
                "CARETAKER_PASSWORD": E2E_PASSWORD,
            },
            app_env={"LISTEN": app_listen},
        )
        pod = KubePod(podman, tmp_path / f"pod-{len(played)}.yaml", docs, secrets)
        pod.down()  # leftovers of an interrupted earlier run use the same names
        played.append(pod)
        return pod

    yield make
    for pod in played:
        print(pod.diagnostics())  # shown by pytest only when the test failed
        pod.down()


def settings_for(e2e_s3: SeaweedServer, bucket: str) -> dict[str, str]:
    """The ConfigMap values: our SeaweedFS and bucket, a short schedule, a free host port."""
    (metrics,) = free_ports(1)
    return {
        "CARETAKER_REPOSITORY": f"s3://{bucket}/app",
        "CARETAKER_S3_ENDPOINT": e2e_s3.endpoint,
        "CARETAKER_SCHEDULE": f"@every {EVERY_SECONDS}s",
        "CARETAKER_LISTEN": f"127.0.0.1:{metrics}",
    }


def restore_outcome(samples: Samples, outcome: str) -> float:
    return samples[("caretaker_restore_outcome", (("outcome", outcome),))]


def test_first_boot_scheduled_and_final_backup_then_restore_into_a_new_pod(
    make_pod: MakePod, podman: Podman, e2e_s3: SeaweedServer, bucket: str
) -> None:
    settings = settings_for(e2e_s3, bucket)
    app_listen = free_address()
    app_url = f"http://{app_listen}"

    first = make_pod(settings, app_listen)
    code, output = first.play()
    assert code == 0, output
    # First start, empty repository: first-boot (allowed by the example), the app starts.
    assert first.restore_result("app")["outcome"] == "first-boot"
    page = wait_until(lambda: http_get(f"{app_url}/index.html"), 30, "the app's page")
    assert page.startswith("created ")
    # The sidecar backs up on its schedule; the host scrapes its metrics.
    wait_until(
        lambda: backups_done(settings["CARETAKER_LISTEN"]) >= 2, 6 * EVERY_SECONDS, "two scheduled backups"
    )
    samples = scrape(settings["CARETAKER_LISTEN"])
    assert samples is not None
    assert restore_outcome(samples, "first-boot") == 1
    assert restore_outcome(samples, "restored") == 0

    # Right after a scheduled run (the next is seconds away), the app writes again and the
    # pod is stopped: only the sidecar's final backup on SIGTERM can hold this file.
    done = backups_done(settings["CARETAKER_LISTEN"])
    wait_until(
        lambda: backups_done(settings["CARETAKER_LISTEN"]) > done, 3 * EVERY_SECONDS, "the next backup"
    )
    podman.run("exec", first.container("app"), "sh", "-c", "echo late > /data/late.txt")
    scheduled = backups_done(settings["CARETAKER_LISTEN"])
    seconds = first.stop()
    assert first.exit_code("caretaker") == 0
    assert seconds < 25, "the sidecar must finish within its shutdown grace (25s)"
    after = host_snapshots(e2e_s3, settings["CARETAKER_REPOSITORY"])
    assert len(after) == scheduled + 1, "one snapshot per scheduled backup, plus the final one"

    # The pod and its volume go away; a new pod gets the data back before its app starts.
    first.down()
    assert not podman.exists("volume", "data")
    second = make_pod(settings, app_listen)
    code, output = second.play()
    assert code == 0, output
    result = second.restore_result("app")
    assert (result["outcome"], result["snapshot"]) == ("restored", after[0]["id"])
    assert wait_until(lambda: http_get(f"{app_url}/index.html"), 30, "the app's page") == page
    assert http_get(f"{app_url}/late.txt") == "late\n"
    boots = wait_until(lambda: http_get(f"{app_url}/boots.txt"), 30, "the boot log")
    assert len(boots.splitlines()) == 2, "the restored boot log plus this boot"
    samples = wait_until(lambda: scrape(settings["CARETAKER_LISTEN"]), 30, "the new sidecar's metrics")
    assert restore_outcome(samples, "restored") == 1
    assert restore_outcome(samples, "first-boot") == 0


def test_unreachable_repository_keeps_the_app_from_starting(
    make_pod: MakePod, podman: Podman, e2e_s3: SeaweedServer, bucket: str
) -> None:
    settings = settings_for(e2e_s3, bucket)
    (nobody,) = free_ports(1)
    settings |= {"CARETAKER_S3_ENDPOINT": f"http://127.0.0.1:{nobody}", "CARETAKER_TIMEOUT": "4s"}

    app_listen = free_address()
    pod = make_pod(settings, app_listen)
    code, output = pod.play()

    assert code == 125, output
    assert "exited with code 4" in output, output
    assert pod.exit_code("restore") == 4
    assert podman.inspect(pod.container("app"))["State"]["Status"] == "created"
    assert http_get(f"http://{app_listen}/") is None
    # The volume holds only the init container's verdict, no app data.
    listing = podman.run(
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        "data:/data:ro",
        BUSYBOX_IMAGE,
        "sh",
        "-c",
        f"ls -A /data; cat {RESULT_FILE}",
    ).stdout
    names, _, result = listing.partition("{")
    assert names.split() == [".caretaker"]
    assert json.loads("{" + result)["outcome"] == "failed"
