"""Run a Kubernetes manifest from examples/ (or a rendered chart) as a pod with `podman kube
play` (podman 4.3).

The manifest is used as written except for what podman 4.3 needs, each said where it is
done (`for_podman`). The settings in its ConfigMap and the keys in its Secret are the
user's to fill in; the test fills them with its own SeaweedFS, bucket and schedule.
A Pod or a Deployment (podman plays replica 0 as the pod `<name>-pod-0`) can be played.
Helpers shared by the e2e tests that talk to a played pod from the host are here too.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.podman import Podman
from tests.support.seaweed import SeaweedServer, free_ports
from tests.support.sidecar import Samples, parse_metrics

Document = dict[str, Any]
# The kinds `kube play` turns into a pod (podman 4.3 plays Pods and Deployments).
WORKLOAD_KINDS = ("Pod", "Deployment")
RESULT_FILE = "/data/.caretaker/restore-result.json"
# The repository password the tests put into the examples' Secrets (over their placeholder);
# the host's caretaker uses it too, to seed and list those repositories.
E2E_PASSWORD = "e2e repository password"
BACKUP_SUCCESS = ("caretaker_job_runs_total", (("kind", "backup"), ("result", "success"), ("task", "backup")))


def load_manifest(path: Path) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def workload(docs: list[Document]) -> Document:
    """The one document `kube play` turns into a pod."""
    found: Document = next(doc for doc in docs if doc["kind"] in WORKLOAD_KINDS)
    return found


def pod_spec(docs: list[Document]) -> Document:
    doc = workload(docs)
    spec: Document = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return spec


def all_containers(spec: Document) -> list[Document]:
    containers: list[Document] = [*spec.get("initContainers", []), *spec["containers"]]
    return containers


def container_named(spec: Document, name: str) -> Document:
    return next(container for container in all_containers(spec) if container["name"] == name)


def set_env(spec: Document, container: str, name: str, value: str) -> None:
    """Set (or add) a plain env variable of one container."""
    variables = container_named(spec, container).setdefault("env", [])
    variables[:] = [variable for variable in variables if variable["name"] != name]
    variables.append({"name": name, "value": value})


def replace_in_command(spec: Document, container: str, pattern: str, replacement: str) -> None:
    """Rewrite a container's command/args (each item, shell scripts included) with a regex;
    fail if it matches nothing, so an example that changed is noticed."""
    found = container_named(spec, container)
    hits = 0
    for key in ("command", "args"):
        for index, item in enumerate(found.get(key, [])):
            found[key][index], count = re.subn(pattern, replacement, item)
            hits += count
    assert hits, f"{pattern!r} not in the command of {container}"


def _numbered_probes(container: Document) -> None:
    """Named probe ports become numbers: the names refer to `ports`, which podman cannot keep,
    and podman 4.3 turns a name it cannot resolve into port 0 in the healthcheck."""
    numbers = {port["name"]: port["containerPort"] for port in container.get("ports", []) if "name" in port}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        for action in ("httpGet", "tcpSocket"):
            target = container.get(probe, {}).get(action)
            if target is not None and target.get("port") in numbers:
                target["port"] = numbers[target["port"]]


def for_podman(
    docs: list[Document],
    *,
    settings: Mapping[str, str] | None = None,
    credentials: Mapping[str, str] | None = None,
    app_env: Mapping[str, str] | None = None,
) -> tuple[list[Document], dict[str, Document]]:
    """Return the documents `kube play` gets and the secrets to create beforehand.

    `settings` go into the ConfigMap(s), `credentials` into the Secret(s) (over the keys
    already there), `app_env` overrides env values the containers already have (listen
    addresses).
    """
    settings, credentials, app_env = settings or {}, credentials or {}, app_env or {}
    docs = copy.deepcopy(docs)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            doc["data"] = {**doc["data"], **settings}
    secrets = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Secret"}
    for secret in secrets.values():
        secret["stringData"] = {**secret.get("stringData", {}), **credentials}
    spec = pod_spec(docs)
    # podman 4.3 re-runs init containers in a loop under restartPolicy Always (podman
    # issues 15631/16343); a pod that stops is what the test wants to see anyway.
    spec["restartPolicy"] = "Never"
    # Host networking keeps every connection on 127.0.0.1: the containers reach the test's
    # SeaweedFS on the host, and the host scrapes /metrics and the app directly.
    spec["hostNetwork"] = True
    for volume in spec.get("volumes", []):
        # podman 4.3 panics on a Secret volume without `optional` (nil pointer in
        # VolumeFromSecret); false is what Kubernetes assumes when it is missing.
        if "secret" in volume:
            volume["secret"].setdefault("optional", False)
    for container in all_containers(spec):
        _numbered_probes(container)
        # podman 4.3 refuses declared ports with host networking ("PortMappings can only
        # be used with Bridge or slirp4netns networking"); they only document anyway.
        container.pop("ports", None)
        for variable in container.get("env", []):
            if variable["name"] in app_env and "value" in variable:
                variable["value"] = app_env[variable["name"]]
    # podman 4.3 stores a `kind: Secret` in a format its own secretRef cannot read back
    # ("secret … is not valid JSON"): the pod gets the secrets created by `podman secret`.
    return [doc for doc in docs if doc["kind"] != "Secret"], secrets


def _secret_values(secret: Document) -> dict[str, bytes]:
    values = {key: value.encode() for key, value in secret.get("stringData", {}).items()}
    return values | {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}


def _podman_secret(name: str, secret: Document, *, volume: bool) -> str:
    """What podman 4.3 reads back from `podman secret create NAME -`, which depends on the use.

    - `envFrom`/`secretRef`: JSON, every key with its base64 value;
    - a `secret:` volume: a `kind: Secret` YAML whose `data` values are written to the files
      as they are (podman 4.3 neither base64-decodes `data` nor reads `stringData`, and
      ignores `defaultMode`: the files are root-owned 0644).
    """
    values = _secret_values(secret)
    if volume:
        data = {key: value.decode() for key, value in values.items()}
        return yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}
        )
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
        """The pod's name; podman 4.3 names a Deployment's (only) pod `<name>-pod-0`."""
        doc = workload(self.docs)
        name: str = doc["metadata"]["name"]
        return name if doc["kind"] == "Pod" else f"{name}-pod-0"

    @property
    def grace_seconds(self) -> int:
        return int(pod_spec(self.docs).get("terminationGracePeriodSeconds", 30))

    def container(self, name: str) -> str:
        """podman names a pod's containers `<pod>-<container>`."""
        return f"{self.name}-{name}"

    def play(self) -> tuple[int, str]:
        """Create the secrets and `kube play` the manifest; return (exit code, output)."""
        self.manifest.write_text(yaml.safe_dump_all(self.docs, sort_keys=False))
        mounted = {v["secret"]["secretName"] for v in pod_spec(self.docs).get("volumes", []) if "secret" in v}
        for name, secret in self.secrets.items():
            self.podman.run("secret", "rm", name, check=False)
            content = _podman_secret(name, secret, volume=name in mounted)
            self.podman.run("secret", "create", name, "-", stdin=content)
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

    def stop_container(self, container: str) -> float:
        """SIGTERM to one container, SIGKILL after terminationGracePeriodSeconds; return how
        long it took. For pods whose stand-in app ignores SIGTERM (a shell as PID 1 without a
        trap), where a pod stop would wait the whole grace for the app."""
        started = time.monotonic()
        self.podman.run(
            "stop",
            "--time",
            str(self.grace_seconds),
            self.container(container),
            timeout=self.grace_seconds + 30,
        )
        return time.monotonic() - started

    def volumes(self) -> list[str]:
        """The podman volumes `kube play` makes: one per emptyDir (named after the pod's
        volume), per claim, and per ConfigMap volume (named after the ConfigMap; a stale one
        would keep its old content)."""
        names = []
        for volume in pod_spec(self.docs).get("volumes", []):
            if "persistentVolumeClaim" in volume:
                names.append(volume["persistentVolumeClaim"]["claimName"])
            elif "configMap" in volume:
                names.append(volume["configMap"]["name"])
            else:
                names.append(volume["name"])
        return names

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

    def read(self, container: str, path: str) -> str:
        """A file as one of the pod's running containers sees it."""
        return self.podman.run("exec", self.container(container), "cat", path).stdout

    def restore_result(self, container: str) -> dict[str, Any]:
        """The init container's result file on the data volume, read through `container`."""
        result: dict[str, Any] = json.loads(self.read(container, RESULT_FILE))
        return result

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


def free_address() -> str:
    (port,) = free_ports(1)
    return f"127.0.0.1:{port}"


def http_get(url: str) -> str | None:
    """The body of a 200 answer, or None while the server is not (yet) there."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body: str = answer.read().decode()
            return body
    except (urllib.error.URLError, ConnectionError):
        return None


def scrape(listen: str) -> Samples | None:
    """The sidecar's /metrics at `listen` (host networking: from the host), or None."""
    text = http_get(f"http://{listen}/metrics")
    return parse_metrics(text) if text is not None else None


def backups_done(listen: str) -> float:
    """caretaker_job_runs_total{task="backup",kind="backup",result="success"}, 0 if unknown."""
    return (scrape(listen) or {}).get(BACKUP_SUCCESS, 0.0)


def _host_env(e2e_s3: SeaweedServer) -> dict[str, str]:
    """The host's caretaker: the test's SeaweedFS, and the tests' repository password."""
    return {"PATH": "/usr/bin:/bin", **e2e_s3.env(), "CARETAKER_PASSWORD": E2E_PASSWORD}


def host_backup(e2e_s3: SeaweedServer, repository: str, path: Path) -> None:
    """A snapshot of `path` made by the host's caretaker, for a pod to restore."""
    subprocess.run(
        [sys.executable, "-m", "caretaker", "backup", "--repository", repository, "--path", str(path)],
        env=_host_env(e2e_s3),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def host_snapshots(e2e_s3: SeaweedServer, repository: str) -> list[dict[str, Any]]:
    """The repository's snapshots as the host's caretaker sees them, newest first."""
    done = subprocess.run(
        [sys.executable, "-m", "caretaker", "snapshots", "--json", "--repository", repository],
        env=_host_env(e2e_s3),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found
