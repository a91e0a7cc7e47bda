"""Two pods of examples/pod/pod.yaml on one repository under `podman kube play`: the handover
of a rolling update whose old pod still runs when the new one starts.

Pod A (first boot) backs up while its app writes. Pod B is played while A runs: its init
container finds A's writer claim and waits, so B's app does not start. The app of A writes
one more file, and A is stopped as Kubernetes stops a pod (SIGTERM): its sidecar takes the
final backup and releases the claim; B's restore then restores exactly that snapshot, with
the file only the final backup holds. Identity is each pod's HOSTNAME, which podman, like
Kubernetes, sets to the pod name.

Podman cannot express a Deployment's rolling update itself (one `kube play` per pod, no
controller); the two plays stand in for its old and new ReplicaSet's pods.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.podman import REPO, Podman
from tests.e2e.pods import (
    E2E_PASSWORD,
    Document,
    KubePod,
    for_podman,
    free_address,
    host_snapshots,
    http_get,
    load_manifest,
    pod_spec,
    workload,
)
from tests.support.seaweed import SeaweedServer, free_ports
from tests.support.sidecar import wait_until

pytestmark = pytest.mark.e2e

EXAMPLE = REPO / "examples/pod/pod.yaml"


def renamed(docs: list[Document], suffix: str) -> list[Document]:
    """The example as a pod of its own: pod, secret and volumes named apart (podman names an
    emptyDir's volume after the pod's volume, so two pods would otherwise share `data`)."""
    docs = copy.deepcopy(docs)
    pod = workload(docs)
    pod["metadata"]["name"] += suffix
    spec = pod_spec(docs)
    for volume in spec["volumes"]:
        volume["name"] += suffix
    for container in [*spec["initContainers"], *spec["containers"]]:
        for mount in container.get("volumeMounts", []):
            mount["name"] += suffix
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                source["secretRef"]["name"] += suffix
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["metadata"]["name"] += suffix
    return docs


@pytest.fixture
def pods(
    podman: Podman, caretaker_image: str, app_image: str, e2e_s3: SeaweedServer, bucket: str, tmp_path: Path
) -> Iterator[dict[str, tuple[KubePod, str]]]:
    """Pods `-a` and `-b` of the example on one repository, each with its own ports: (pod,
    its app's address)."""
    played: dict[str, tuple[KubePod, str]] = {}
    for suffix in ("-a", "-b"):
        (metrics,) = free_ports(1)
        app_listen = free_address()
        settings = {
            "CARETAKER_REPOSITORY": f"s3://{bucket}/app",
            "CARETAKER_S3_ENDPOINT": e2e_s3.endpoint,
            "CARETAKER_SCHEDULE": "@every 2s",
            "CARETAKER_LISTEN": f"127.0.0.1:{metrics}",
            "CARETAKER_CLAIM_HEARTBEAT": "2s",
            "CARETAKER_CLAIM_EXPIRY": "6s",
        }
        docs, secrets = for_podman(
            renamed(load_manifest(EXAMPLE), suffix),
            settings=settings,
            credentials={
                "AWS_ACCESS_KEY_ID": e2e_s3.access_key,
                "AWS_SECRET_ACCESS_KEY": e2e_s3.secret_key,
                "CARETAKER_PASSWORD": E2E_PASSWORD,
            },
            app_env={"LISTEN": app_listen},
        )
        pod = KubePod(podman, tmp_path / f"pod{suffix}.yaml", docs, secrets)
        pod.down()
        played[suffix] = (pod, app_listen)
    yield played
    for pod, _ in played.values():
        print(pod.diagnostics())  # shown by pytest only when the test failed
        pod.down()


def test_the_new_pod_restores_the_old_pods_final_backup(
    pods: dict[str, tuple[KubePod, str]], podman: Podman, e2e_s3: SeaweedServer, bucket: str
) -> None:
    (old, _), (new, new_app) = pods["-a"], pods["-b"]
    code, output = old.play()
    assert code == 0, output
    wait_until(lambda: host_snapshots(e2e_s3, f"s3://{bucket}/app"), 60, "the old pod's first backup")

    result: dict[str, tuple[int, str]] = {}
    playing = threading.Thread(target=lambda: result.update(new=new.play()), daemon=True)
    playing.start()
    waiting = lambda: "restore.handover_waiting" in podman.logs(new.container("restore"))  # noqa: E731
    wait_until(waiting, 120, "the new pod's restore to wait for the old pod")
    assert http_get(f"http://{new_app}/index.html") is None  # its app has not started
    podman.run("exec", old.container("app"), "sh", "-c", "echo late > /data/late.txt")
    old.stop()
    assert old.exit_code("caretaker") == 0
    playing.join(120)
    assert result["new"][0] == 0, result["new"][1]

    final = host_snapshots(e2e_s3, f"s3://{bucket}/app")[0]
    restored = new.restore_result("app")
    assert (restored["outcome"], restored["snapshot"]) == ("restored", final["id"])
    assert wait_until(lambda: http_get(f"http://{new_app}/late.txt"), 30, "the new app") == "late\n"
