"""Every command of README.md and docs/*.md that is meant to run in caretaker's image runs in
the image (the built one, locked down as a pod runs it).

Found in the docs:
- shell code blocks: each command line (continuations joined) is split into its pipeline's
  commands; `caretaker …` runs in the image, with the block's `export`s as its environment;
  every other command must be a host tool listed in HOST_TOOLS with where it comes from, so a
  new kind of command in the docs cannot go unnoticed;
- YAML code blocks: the `command` argv of sidecar jobs and hooks (they run in the sidecar)
  and health checks (`CARETAKER_CHECK_CMD`, `checkCommand`), which the init container runs;
- `--check-cmd "…"` in the text.

The placeholders of the docs are mapped to the test's servers: S3 URLs to SeaweedFS on
127.0.0.1 (their buckets created), `git@git.example.com` to a private sshd with `git-shell`,
paths (`/data`, `/backups`, `/restore-here`, `/etc/caretaker/…`, `/var/run/secrets/s3/…`)
to folders the test mounts. `/data` holds a small SQLite database (`app.db`), like the apps
the docs speak of. Long-running commands (`caretaker sidecar`) get `CARETAKER_CHECK_CONFIG=true`:
they validate their flags and config file and exit.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.podman import REPO, Podman, run_locked_down
from tests.support.git_remotes import SshServer
from tests.support.seaweed import SeaweedServer

pytestmark = pytest.mark.e2e

DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "charts/caretaker/README.md")
FENCE = re.compile(r"^```(?P<language>\w*)\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
CHECK_CMD = re.compile(r'--check-cmd "(?P<command>[^"]+)"')
# Commands in the docs that run outside the image, and where each comes from.
HOST_TOOLS = {
    "scripts/demo": "this repository, in a checkout",
    "scripts/test": "this repository, in a checkout",
    "scripts/build-image": "this repository, in a checkout",
    "source": "the shell of the machine that builds the image",
    "pip": "the Python of the machine that builds the image",
    "docker": "Docker, where you build the image",
    "podman": "podman, installed by scripts/setup",
    "kubectl": "your cluster's client",
    "helm": "Helm, your cluster's package manager",
    "kustomize": "kustomize, your manifests' build tool",
}
IMAGE_COMMAND = "caretaker"
PLACEHOLDER_GIT_HOST = "git+ssh://git@git.example.com"
S3_CREDENTIALS = "/var/run/secrets/s3"  # where docs/s3.md mounts the keys
GIT_SECRETS = "/etc/caretaker/secrets"
PASSWORD = "/etc/caretaker/password"


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block: where it is and what it says."""

    doc: str
    line: int
    language: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(language: str) -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match["language"] == language:
                line = text.count("\n", 0, match.start("body")) + 1
                found.append(Block(str(path.relative_to(REPO)), line, language, match["body"]))
    return found


def pipelines(block: Block) -> Iterator[list[list[str]]]:
    """Each command line of a shell block as its pipeline's commands (argv lists); comments
    and output redirections dropped, continuation lines joined."""
    pending = ""
    for line in block.body.splitlines():
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        tokens, pending = shlex.split(pending + line, comments=True), ""
        if tokens:
            commands: list[list[str]] = [[]]
            for token in tokens:
                if token == "|":
                    commands.append([])
                else:
                    commands[-1].append(token)
            yield [command[: command.index(">")] if ">" in command else command for command in commands]


def exports(block: Block) -> dict[str, str]:
    env = {}
    for pipeline in pipelines(block):
        for command in pipeline:
            if command[0] == "export":
                env |= dict(item.split("=", 1) for item in command[1:])
    return env


def image_commands(block: Block) -> list[list[str]]:
    return [command for pipeline in pipelines(block) for command in pipeline if command[0] == IMAGE_COMMAND]


def commands_caretaker_runs(node: Any) -> Iterator[list[str]]:
    """Sidecar job and hook commands, and health checks, in a YAML document. The `command`
    of a Kubernetes container (a mapping with an `image`) runs in that image: left out."""
    if isinstance(node, dict):
        if isinstance(node.get("command"), list) and "image" not in node:
            yield [str(item) for item in node["command"]]
        if node.get("name") == "CARETAKER_CHECK_CMD" and "value" in node:
            yield shlex.split(node["value"])
        if isinstance(node.get("checkCommand"), str) and node["checkCommand"]:
            yield shlex.split(node["checkCommand"])
        for value in node.values():
            yield from commands_caretaker_runs(value)
    elif isinstance(node, list):
        for item in node:
            yield from commands_caretaker_runs(item)


def run_by_caretaker() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command caretaker itself starts, as the docs write them."""
    found = [
        (block.where, argv)
        for block in blocks("yaml")
        for argv in commands_caretaker_runs(yaml.safe_load(block.body))
    ]
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in CHECK_CMD.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{path.relative_to(REPO)}:{line}", shlex.split(match["command"])))
    return found


SHELL_BLOCKS = [block for block in blocks("sh") if image_commands(block)]
RUN_BY_CARETAKER = run_by_caretaker()


def sidecar_config() -> str:
    """docs/sidecar.md's config file example (the YAML block with `jobs`)."""
    (block,) = [b for b in blocks("yaml") if b.doc == "docs/sidecar.md" and "\njobs:" in b.body]
    return block.body


def test_every_command_is_run_here_or_comes_from_a_named_tool() -> None:
    """A command the docs show runs in the image (and below), or is a known host tool."""
    unknown = {
        f"{block.where}: {command[0]}"
        for block in blocks("sh")
        for pipeline in pipelines(block)
        for command in pipeline
        if command[0] not in {IMAGE_COMMAND, "export", *HOST_TOOLS}
    }
    assert not unknown, "say where these tools come from (HOST_TOOLS) or run them in the image"
    assert len(SHELL_BLOCKS) >= 5, [block.where for block in SHELL_BLOCKS]
    assert len(RUN_BY_CARETAKER) >= 5, RUN_BY_CARETAKER


def make_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        db.executemany("INSERT INTO orders (item) VALUES (?)", [(f"item {n}",) for n in range(100)])
    db.close()


def writable(path: Path) -> Path:
    """A folder the image's user (65532) can write, as a volume would be."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@dataclasses.dataclass
class Mounts:
    """The folders and files the docs' commands expect, on the host."""

    root: Path

    def prepare(self, git_host: SshServer, e2e_s3: SeaweedServer) -> None:
        data = writable(self.root / "data")
        make_database(data / "app.db")
        (data / "app.db").chmod(0o666)
        writable(data / "cache").joinpath("page.html").write_text("cached\n")
        (data / "upload.tmp").write_text("partial\n")
        writable(self.root / "backups")
        writable(self.root / "restore-here")
        secrets = writable(self.root / "etc-caretaker" / "secrets")
        (secrets / "ssh-privatekey").write_bytes(git_host.deploy_key.read_bytes())
        (secrets / "known_hosts").write_bytes(git_host.known_hosts.read_bytes())
        # The notification and heartbeat URLs docs/sidecar.md's config file reads from files.
        (secrets / "notify").write_text("json://127.0.0.1:9/hook\n")
        (secrets / "heartbeat").write_text("https://hc-ping.example/check\n")
        (self.root / "etc-caretaker" / "sidecar.yaml").write_text(sidecar_config())
        (self.root / "etc-caretaker" / "password").write_text("the docs' repository password\n")
        (secrets / "offsite-password").write_text("the docs' second repository's password\n")
        s3 = writable(self.root / "s3-secrets")
        (s3 / "access-key-id").write_text(e2e_s3.access_key)
        (s3 / "secret-access-key").write_text(e2e_s3.secret_key)
        caretaker = (self.root / "etc-caretaker" / name for name in ("sidecar.yaml", "password"))
        for path in (*secrets.iterdir(), *s3.iterdir(), *caretaker):
            path.chmod(0o644)
        writable(self.root / "work").joinpath("deploy.yaml").write_text(yaml.safe_dump(DEPLOYMENT))

    def options(self) -> list[str]:
        pairs = {
            "data": "/data",
            "backups": "/backups",
            "restore-here": "/restore-here",
            "etc-caretaker": "/etc/caretaker",
            "s3-secrets": S3_CREDENTIALS,
            "work": "/work",
        }
        volumes = [f"--volume={self.root / name}:{target}" for name, target in pairs.items()]
        return [*volumes, "--workdir=/work"]


# What `caretaker inject` reads in docs/inject.md (deploy.yaml, or the output of kustomize).
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "shop"},
    "spec": {
        "selector": {"matchLabels": {"app": "shop"}},
        "template": {
            "metadata": {"labels": {"app": "shop"}},
            "spec": {
                "containers": [
                    {
                        "name": "shop",
                        "image": "shop:1",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
            },
        },
    },
}


@pytest.fixture
def mounts(tmp_path: Path, git_host: SshServer, e2e_s3: SeaweedServer) -> Mounts:
    found = Mounts(tmp_path / "mounts")
    found.prepare(git_host, e2e_s3)
    return found


def ensure_buckets(e2e_s3: SeaweedServer, text: str) -> None:
    have = {bucket["Name"] for bucket in e2e_s3.client().list_buckets()["Buckets"]}
    for name in set(re.findall(r"s3://([a-z0-9][a-z0-9.-]+)", text)) - have:
        e2e_s3.make_bucket(name)


def on_test_servers(argv: list[str], git_host: SshServer) -> list[str]:
    """The docs' placeholder git host becomes the test's sshd (same repository path)."""
    local = git_host.url("").split("#")[0].rstrip("/")
    return [arg.replace(PLACEHOLDER_GIT_HOST, local) for arg in argv]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda block: block.where)
def test_caretaker_commands_of_the_docs_run_in_the_image(
    block: Block,
    podman: Podman,
    caretaker_image: str,
    e2e_s3: SeaweedServer,
    git_host: SshServer,
    mounts: Mounts,
) -> None:
    ensure_buckets(e2e_s3, block.body)
    for name in set(re.findall(r"git\.example\.com/([^#'\s]+)", block.body)):
        git_host.create(name)
    for argv in image_commands(block):
        env = {
            "CARETAKER_S3_ENDPOINT": e2e_s3.endpoint,
            "CARETAKER_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID_FILE": f"{S3_CREDENTIALS}/access-key-id",
            "AWS_SECRET_ACCESS_KEY_FILE": f"{S3_CREDENTIALS}/secret-access-key",
            "CARETAKER_GIT_SSH_KEY_FILE": f"{GIT_SECRETS}/ssh-privatekey",
            "CARETAKER_GIT_KNOWN_HOSTS_FILE": f"{GIT_SECRETS}/known_hosts",
            "CARETAKER_CHECK_CONFIG": "true",
            # Repositories are encrypted (a password for a git one is refused, docs/git.md).
            **({} if any(arg.startswith("git+") for arg in argv) else {"CARETAKER_PASSWORD_FILE": PASSWORD}),
            **exports(block),
        }
        run_locked_down(
            podman,
            caretaker_image,
            *on_test_servers(argv[1:], git_host),
            env=env,
            options=mounts.options(),
            stdin=(mounts.root / "work" / "deploy.yaml").read_text() if "-" in argv else None,
        )


@pytest.mark.parametrize(("where", "argv"), RUN_BY_CARETAKER, ids=[where for where, _ in RUN_BY_CARETAKER])
def test_commands_caretaker_starts_run_in_the_image(
    where: str, argv: list[str], podman: Podman, caretaker_image: str, mounts: Mounts
) -> None:
    """Hooks, command jobs and health checks run in caretaker's container, in `/data` (the
    check's `--path`), on data that is healthy: each must exit 0 there."""
    run_locked_down(
        podman,
        caretaker_image,
        *argv[1:],
        entrypoint=argv[0],
        options=[*mounts.options(), "--workdir=/data"],
    )
