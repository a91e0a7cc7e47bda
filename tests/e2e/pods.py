"""Run a Kubernetes manifest from examples/ as a pod with `podman kube play` (podman 4.3).

The example is used as written except for what podman 4.3 needs, each said where it is
done (`for_podman`). The settings in its ConfigMap and the keys in its Secret are the
user's to fill in; the test fills them with its own SeaweedFS, bucket and schedule.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.podman import Podman

Document = dict[str, Any]


def load_manifest(path: Path) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def pod_spec(docs: list[Document]) -> Document:
    spec: Document = next(doc for doc in docs if doc["kind"] == "Pod")["spec"]
    return spec


def for_podman(
    docs: list[Document],
    *,
    settings: Mapping[str, str],
    credentials: Mapping[str, str],
    app_env: Mapping[str, str],
) -> tuple[list[Document], dict[str, Document]]:
    """Return the documents `kube play` gets and the secrets to create beforehand.

    `settings` go into the ConfigMap, `credentials` into the Secret, `app_env` overrides
    env values of the app container (its listen address).
    """
    docs = copy.deepcopy(docs)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            doc["data"] = {**doc["data"], **settings}
    secrets = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Secret"}
    for secret in secrets.values():
        secret["stringData"] = dict(credentials)
    spec = pod_spec(docs)
    # podman 4.3 re-runs init containers in a loop under restartPolicy Always (podman
    # issues 15631/16343); a pod that stops is what the test wants to see anyway.
    spec["restartPolicy"] = "Never"
    # Host networking keeps every connection on 127.0.0.1: the containers reach the test's
    # SeaweedFS on the host, and the host scrapes /metrics and the app directly.
    spec["hostNetwork"] = True
    for container in spec["containers"]:
        # podman 4.3 refuses declared ports with host networking ("PortMappings can only
        # be used with Bridge or slirp4netns networking"); they only document anyway.
        container.pop("ports", None)
        for variable in container.get("env", []):
            variable["value"] = app_env.get(variable["name"], variable["value"])
    # podman 4.3 stores a `kind: Secret` in a format its own secretRef cannot read back
    # ("secret … is not valid JSON"): the pod gets the secrets created by `podman secret`.
    return [doc for doc in docs if doc["kind"] != "Secret"], secrets


def _podman_secret(secret: Document) -> str:
    """The JSON podman 4.3's secretRef reads: every key with its base64 value."""
    values = {key: value.encode() for key, value in secret.get("stringData", {}).items()}
    values |= {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}
    return json.dumps({key: base64.b64encode(value).decode() for key, value in values.items()})


@dataclasses.dataclass
class KubePod:
    """One pod played from a manifest; `down()` removes it with its volumes and secrets."""

    podman: Podman
    manifest: Path
    docs: list[Document]
    secrets: dict[str, Document]

    @property
    def name(self) -> str:
        name: str = next(d for d in self.docs if d["kind"] == "Pod")["metadata"]["name"]
        return name

    @property
    def grace_seconds(self) -> int:
        return int(pod_spec(self.docs).get("terminationGracePeriodSeconds", 30))

    def container(self, name: str) -> str:
        """podman names a pod's containers `<pod>-<container>`."""
        return f"{self.name}-{name}"

    def play(self) -> tuple[int, str]:
        """Create the secrets and `kube play` the manifest; return (exit code, output)."""
        self.manifest.write_text(yaml.safe_dump_all(self.docs, sort_keys=False))
        for name, secret in self.secrets.items():
            self.podman.run("secret", "rm", name, check=False)
            self.podman.run("secret", "create", name, "-", stdin=_podman_secret(secret))
        done = self.podman.run("kube", "play", str(self.manifest), check=False, timeout=300)
        return done.returncode, done.stdout + done.stderr

    def stop(self) -> float:
        """Stop as Kubernetes does: SIGTERM, SIGKILL after terminationGracePeriodSeconds
        (which podman 4.3 does not take from the manifest). Return how long it took.

        Not `podman kube down`: before podman 5.1 it SIGKILLs at once (podman issues 19135,
        21767, 22397); its own workaround is `podman pod stop` first.
        """
        started = time.monotonic()
        self.podman.run(
            "pod", "stop", "--time", str(self.grace_seconds), self.name, timeout=self.grace_seconds + 30
        )
        return time.monotonic() - started

    def volumes(self) -> list[str]:
        return [volume["name"] for volume in pod_spec(self.docs).get("volumes", [])]

    def down(self) -> None:
        """Delete the pod, its emptyDir volumes and its secrets; missing ones are fine."""
        self.podman.run("kube", "down", str(self.manifest), check=False)
        for volume in self.volumes():
            self.podman.run("volume", "rm", "--force", volume, check=False)
        for name in self.secrets:
            self.podman.run("secret", "rm", name, check=False)

    def exit_code(self, container: str) -> int:
        code: int = self.podman.inspect(self.container(container))["State"]["ExitCode"]
        return code

    def diagnostics(self) -> str:
        """Every container's state and log, for failure messages."""
        listing = self.podman.run("ps", "--all", "--pod", "--filter", f"pod={self.name}", check=False).stdout
        logs = [
            f"--- {name} ---\n{self.podman.logs(name)}"
            for name in self.podman.run(
                "ps", "--all", "--filter", f"pod={self.name}", "--format", "{{.Names}}", check=False
            ).stdout.split()
        ]
        return "\n".join([listing, *logs])
