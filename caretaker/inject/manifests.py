"""Add caretaker to Kubernetes manifests (`caretaker inject`), the way `linkerd inject` does.

Pure functions over parsed YAML documents; `caretaker.inject.command` reads and writes text.
Containers, volumes and names mirror the Helm chart's named templates
(charts/caretaker/templates/_helpers.tpl), and a test renders both and compares them, so a
pod looks the same whichever way caretaker was added.

Injecting is idempotent: caretaker's own containers and volumes are removed first and added
again at fixed places, so a second run over the output changes nothing (and a run with other
flags updates them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from restore import __version__
from restore.errors import ConfigError, Problem
from restore.initcontainer.decision import EmptyStart

RESTORE = "caretaker-restore"
SIDECAR = "caretaker"
TMP_VOLUME = "caretaker-tmp"
CONFIG_VOLUME = "caretaker-config"
SECRET_VOLUME = "caretaker-secrets"  # noqa: S105 - a volume's name, not a secret
CONFIG_DIR = "/etc/caretaker/config"
SECRET_DIR = "/etc/caretaker/secrets"  # noqa: S105 - where a Secret is mounted
PASSWORD_VOLUME = "caretaker-password"  # noqa: S105 - a volume's name, not a password
PASSWORD_DIR = "/etc/caretaker/password"  # noqa: S105 - where its Secret is mounted
TMP_DIR = "/tmp"  # noqa: S108 - a private emptyDir: the root filesystem is read-only
METRICS_PORT_NAME = "ct-metrics"
DEFAULT_IMAGE = f"ghcr.io/caretaker/caretaker:{__version__}"  # placeholder name, see docs
DEFAULT_UID = 65532
DEFAULT_CONTAINER_KEY = "kubectl.kubernetes.io/default-container"

_OWN_CONTAINERS = frozenset({RESTORE, SIDECAR})
_OWN_VOLUMES = frozenset({TMP_VOLUME, CONFIG_VOLUME, SECRET_VOLUME, PASSWORD_VOLUME})
# Where each workload kind keeps its pod: (path to the pod metadata, path to the pod spec).
_TEMPLATE_PATHS = (("spec", "template", "metadata"), ("spec", "template", "spec"))
_POD_PATHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Pod": (("metadata",), ("spec",)),
    **dict.fromkeys(("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"), _TEMPLATE_PATHS),
}
_RESOURCES = {
    RESTORE: {"limits": {"memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
    SIDECAR: {"limits": {"memory": "512Mi"}, "requests": {"cpu": "50m", "memory": "128Mi"}},
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class InjectOptions:
    """What to add; field names follow the command's flags."""

    volume: str
    container: str | None = None
    repository: str | None = None
    path: str | None = None  # default: where the app container mounts the volume
    image: str = DEFAULT_IMAGE
    secret: str | None = None  # envFrom
    secret_files: str | None = None  # mounted at SECRET_DIR
    password_secret: str | None = None  # the repository's password, mounted at PASSWORD_DIR
    password_key: str = "password"  # noqa: S105 - the key in that Secret
    insecure_no_encryption: bool = False
    config_map: str | None = None  # the sidecar's YAML config, key config.yaml
    schedule: str | None = None  # env-only mode: the backup job's schedule
    env: tuple[tuple[str, str], ...] = ()
    native: bool = False
    metrics_port: int = 9090
    # A first install on a repository that never held a snapshot starts empty, once.
    allow_empty: EmptyStart = "new-repository"
    check_cmd: str | None = None
    user: tuple[int, int] | None = None  # default: the app container's runAsUser/runAsGroup
    only: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class _Pod:
    """One pod template found in the input, with what is needed to name it in errors."""

    label: str  # e.g. "Deployment/web"
    document: dict[str, Any]
    paths: tuple[tuple[str, ...], tuple[str, ...]]  # to the pod's metadata and spec
    claim_names: tuple[str, ...]  # StatefulSet volumeClaimTemplates

    @property
    def spec(self) -> dict[str, Any]:
        node: Any = self.document
        for key in self.paths[1]:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else {}


def inject_documents(documents: list[Any], options: InjectOptions) -> int:
    """Add caretaker to every workload in `documents` (changed in place); return how many.

    Other objects (Services, ConfigMaps, ...) are left alone; `List` kinds are searched.
    Raise ConfigError naming every workload whose volume or container is missing, or if
    the input holds no workload at all.
    """
    if not options.repository and not options.secret:
        raise ConfigError.single(
            "--repository", None, "give --repository, or a --secret holding CARETAKER_REPOSITORY"
        )
    if (problem := _encryption_problem(options)) is not None:
        raise ConfigError([problem])
    pods = [pod for pod in _pods(documents) if _selected(pod, options)]
    if not pods:
        raise ConfigError.single(
            "input", None, "no Deployment, StatefulSet, DaemonSet, ReplicaSet or Pod to inject"
        )
    plans: list[tuple[_Pod, dict[str, Any], dict[str, Any]]] = []
    problems: list[Problem] = []
    for pod in pods:
        plan, found = _plan(pod, options)
        problems.extend(found)
        if plan is not None:
            plans.append((pod, *plan))
    if problems:
        raise ConfigError(problems)  # before any change: all workloads or none
    for pod, app, mount in plans:
        _apply(pod, app, mount, options)
    return len(pods)


def _encryption_problem(options: InjectOptions) -> Problem | None:
    """As the chart: a password for every repository but git's, unless explicitly opted out."""
    git = (options.repository or "").startswith("git+")
    if git and options.password_secret:
        return Problem("--password-secret", options.password_secret, "git repositories cannot be encrypted")
    if options.password_secret and options.insecure_no_encryption:
        return Problem("--insecure-no-encryption", True, "give it or --password-secret, not both")
    if not (git or options.password_secret or options.insecure_no_encryption):
        return Problem(
            "--password-secret",
            None,
            "name the Secret holding the repository's password (keep a copy outside the cluster: "
            "losing it loses the backups), or pass --insecure-no-encryption",
        )
    return None


def _selected(pod: _Pod, options: InjectOptions) -> bool:
    return not options.only or pod.label.split("/", 1)[1] in options.only


def _pods(documents: list[Any]) -> Iterator[_Pod]:
    for document in documents:
        if not isinstance(document, dict):
            continue
        kind = str(document.get("kind", ""))
        if kind.endswith("List") and isinstance(document.get("items"), list):
            yield from _pods(document["items"])
        elif kind in _POD_PATHS:
            name = (document.get("metadata") or {}).get("name", "<unnamed>")
            claims = (document.get("spec") or {}).get("volumeClaimTemplates") or []
            yield _Pod(
                label=f"{kind}/{name}",
                document=document,
                paths=_POD_PATHS[kind],
                claim_names=tuple(c.get("metadata", {}).get("name", "") for c in claims),
            )


def _child(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """Return the mapping at `path`, creating empty ones on the way (a bare pod template)."""
    node = document
    for key in path:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    return node


def _plan(
    pod: _Pod, options: InjectOptions
) -> tuple[tuple[dict[str, Any], dict[str, Any]] | None, list[Problem]]:
    """Find the app container and its mount of the volume; or the problems why not."""
    spec = pod.spec
    app_containers = [c for c in spec.get("containers") or [] if c.get("name") not in _OWN_CONTAINERS]
    app, problems = _app_container(pod, app_containers, options)
    volumes = [v.get("name") for v in spec.get("volumes") or [] if v.get("name") not in _OWN_VOLUMES]
    if options.volume not in (*volumes, *pod.claim_names):
        have = ", ".join(sorted(filter(None, (*volumes, *pod.claim_names)))) or "none"
        message = f"{pod.label} has no such volume (it has: {have})"
        problems.append(Problem("--volume", options.volume, message))
    problems.extend(_port_conflicts(pod, spec, options))
    if app is None or problems:
        return None, problems
    mount = next((m for m in app.get("volumeMounts") or [] if m.get("name") == options.volume), None)
    if mount is None:
        message = f"{pod.label}: container {app['name']} does not mount this volume"
        return None, [Problem("--volume", options.volume, message)]
    return (app, mount), []


def _app_container(
    pod: _Pod, containers: list[dict[str, Any]], options: InjectOptions
) -> tuple[dict[str, Any] | None, list[Problem]]:
    names = [str(c.get("name")) for c in containers]
    if options.container is not None:
        if options.container in names:
            return containers[names.index(options.container)], []
        have = ", ".join(names) or "none"
        message = f"{pod.label} has no such container (it has: {have})"
        return None, [Problem("--container", options.container, message)]
    if len(containers) == 1:
        return containers[0], []
    message = f"{pod.label} has {len(names)} containers ({', '.join(names)}): name one"
    return None, [Problem("--container", None, message)]


def _port_conflicts(pod: _Pod, spec: dict[str, Any], options: InjectOptions) -> list[Problem]:
    """The pod shares one network namespace: the metrics port must be free."""
    return [
        Problem(
            "--metrics-port",
            options.metrics_port,
            f"{pod.label}: container {container.get('name')} already uses it",
        )
        for container in (*(spec.get("initContainers") or []), *(spec.get("containers") or []))
        if container.get("name") not in _OWN_CONTAINERS
        and any(p.get("containerPort") == options.metrics_port for p in container.get("ports") or [])
    ]


def _apply(pod: _Pod, app: dict[str, Any], mount: dict[str, Any], options: InjectOptions) -> None:
    spec = _child(pod.document, pod.paths[1])
    metadata = _child(pod.document, pod.paths[0])
    mount_path = options.path or str(mount["mountPath"])
    user = options.user or _user_of(app, spec)
    restore = restore_container(options, mount_path, mount.get("subPath"), user)
    sidecar = sidecar_container(options, mount_path, mount.get("subPath"), user)
    init = [c for c in spec.get("initContainers") or [] if c.get("name") not in _OWN_CONTAINERS]
    containers = [c for c in spec.get("containers") or [] if c.get("name") not in _OWN_CONTAINERS]
    spec["initContainers"] = [restore, *([sidecar] if options.native else []), *init]
    spec["containers"] = [*containers, *([] if options.native else [sidecar])]
    kept = [v for v in spec.get("volumes") or [] if v.get("name") not in _OWN_VOLUMES]
    spec["volumes"] = [*kept, *caretaker_volumes(options)]
    annotations = metadata.get("annotations") or {}
    annotations.setdefault(DEFAULT_CONTAINER_KEY, app["name"])
    metadata["annotations"] = annotations


def _user_of(app: dict[str, Any], spec: dict[str, Any]) -> tuple[int, int]:
    """Run as the app's user, so restored files belong to it (container beats pod level)."""
    own = app.get("securityContext") or {}
    pod = spec.get("securityContext") or {}
    uid = own.get("runAsUser", pod.get("runAsUser", DEFAULT_UID))
    gid = own.get("runAsGroup", pod.get("runAsGroup", uid))
    return int(uid), int(gid)


def security_context(user: tuple[int, int]) -> dict[str, Any]:
    """The chart's container security context (values.yaml `securityContext`)."""
    uid, gid = user
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsGroup": gid,
        "runAsNonRoot": uid != 0,
        "runAsUser": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _env(options: InjectOptions, mount_path: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # Who holds the repository's writer claim (restore.identity): the pod, this incarnation.
        {"name": "CARETAKER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "CARETAKER_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
    ]
    if options.repository:
        env.append({"name": "CARETAKER_REPOSITORY", "value": options.repository})
    env.append({"name": "CARETAKER_PATH", "value": mount_path})
    if options.password_secret:
        env.append({"name": "CARETAKER_PASSWORD_FILE", "value": f"{PASSWORD_DIR}/{options.password_key}"})
    elif options.insecure_no_encryption:
        env.append({"name": "CARETAKER_INSECURE_NO_ENCRYPTION", "value": "true"})
    env.append({"name": "HOME", "value": TMP_DIR})
    env += [{"name": name, "value": value} for name, value in options.env]
    return env


def _mounts(options: InjectOptions, mount_path: str, sub_path: str | None) -> list[dict[str, Any]]:
    data: dict[str, Any] = {"name": options.volume, "mountPath": mount_path}
    if sub_path:
        data["subPath"] = sub_path
    mounts = [data, {"name": TMP_VOLUME, "mountPath": TMP_DIR}]
    if options.secret_files:
        mounts.append({"name": SECRET_VOLUME, "mountPath": SECRET_DIR, "readOnly": True})
    if options.password_secret:
        mounts.append({"name": PASSWORD_VOLUME, "mountPath": PASSWORD_DIR, "readOnly": True})
    return mounts


def _base(name: str, options: InjectOptions, user: tuple[int, int]) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": options.image, "imagePullPolicy": "IfNotPresent"}
    if options.secret:
        container["envFrom"] = [{"secretRef": {"name": options.secret}}]
    container["securityContext"] = security_context(user)
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def restore_container(
    options: InjectOptions, mount_path: str, sub_path: str | None, user: tuple[int, int]
) -> dict[str, Any]:
    """The `caretaker restore` init container."""
    env = _env(options, mount_path)
    if options.allow_empty != "never":
        env.append({"name": "CARETAKER_ALLOW_EMPTY", "value": options.allow_empty})
    if options.check_cmd:
        env.append({"name": "CARETAKER_CHECK_CMD", "value": options.check_cmd})
    container = _base(RESTORE, options, user)
    container |= {
        "args": ["restore"],
        "env": env,
        "volumeMounts": _mounts(options, mount_path, sub_path),
        "resources": _RESOURCES[RESTORE],
    }
    return container


def _probe(path: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": METRICS_PORT_NAME}, **timing}


def sidecar_container(
    options: InjectOptions, mount_path: str, sub_path: str | None, user: tuple[int, int]
) -> dict[str, Any]:
    """The `caretaker sidecar` container (an init container with restartPolicy Always if native)."""
    env = _env(options, mount_path)
    env.append({"name": "CARETAKER_LISTEN", "value": f":{options.metrics_port}"})
    mounts = _mounts(options, mount_path, sub_path)
    if options.config_map:
        env.append({"name": "CARETAKER_CONFIG", "value": f"{CONFIG_DIR}/config.yaml"})
        mounts.append({"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True})
    if options.schedule:
        env.append({"name": "CARETAKER_SCHEDULE", "value": options.schedule})
    container = _base(SIDECAR, options, user)
    if options.native:
        container["restartPolicy"] = "Always"
    port = {"name": METRICS_PORT_NAME, "containerPort": options.metrics_port, "protocol": "TCP"}
    container |= {
        "args": ["sidecar"],
        "env": env,
        "ports": [port],
        "volumeMounts": mounts,
        "livenessProbe": _probe(
            "/healthz", failureThreshold=3, initialDelaySeconds=5, periodSeconds=20, timeoutSeconds=5
        ),
        "readinessProbe": _probe("/readyz", failureThreshold=3, periodSeconds=30, timeoutSeconds=5),
        "resources": _RESOURCES[SIDECAR],
    }
    return container


def caretaker_volumes(options: InjectOptions) -> list[dict[str, Any]]:
    """caretaker's own volumes: a writable /tmp, the config, the file and password Secrets."""
    volumes: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "256Mi"}}]
    if options.config_map:
        volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": options.config_map}})
    if options.secret_files:
        # 0440: readable by the pod's fsGroup, not by others.
        secret = {"secretName": options.secret_files, "defaultMode": 0o440}
        volumes.append({"name": SECRET_VOLUME, "secret": secret})
    if options.password_secret:
        password = {"secretName": options.password_secret, "defaultMode": 0o440}
        volumes.append({"name": PASSWORD_VOLUME, "secret": password})
    return volumes
