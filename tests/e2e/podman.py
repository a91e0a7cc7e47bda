"""podman and buildah with caretaker's own configuration, for the e2e tier.

scripts/setup.d/50-containers.sh writes containers.conf, storage.conf and registries.conf
into a cache folder and exports nothing; every command here points CONTAINERS_CONF & co. at
those files, so tests use their own image store and never the machine's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The busybox the examples name: a stand-in built FROM scratch with the host's busybox-static.
BUSYBOX_IMAGE = "docker.io/library/busybox:1.36"
# The name examples/ and docs use for caretaker's image (a placeholder for your registry).
EXAMPLE_IMAGE = "ghcr.io/caretaker/caretaker"
# The stand-in for python:3.11-slim-bookworm that scripts/base-image makes.
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
# The WebDAV server examples/webdav-git names cannot be pulled here; its stand-in is the base
# image with Debian's rclone (1.60), as the entrypoint like in rclone's own image, so the
# example's `args` run unchanged. Tagged by the recipe's hash: a changed recipe rebuilds.
RCLONE_IMAGE = "docker.io/rclone/rclone:1.68"
RCLONE_RECIPE = f"""FROM {BASE_IMAGE}
RUN apt-get update \\
    && apt-get install --yes --no-install-recommends rclone \\
    && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["rclone"]
"""


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def containers_dir() -> Path:
    """Where 50-containers.sh keeps the configuration and the image store."""
    base = os.environ.get("XDG_CACHE_HOME") or str(REPO / ".cache")
    return Path(base) / "caretaker-containers"


class Podman:
    """Run podman/buildah against caretaker's store. Output is text; failures raise with it."""

    def __init__(self, config: Path) -> None:
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(config / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(config / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(config / "registries.conf"),
            "BUILDAH_ISOLATION": "chroot",
        }

    @classmethod
    def configured(cls) -> Podman:
        """Write (or check) the configuration with the setup script, then use it."""
        subprocess.run(["bash", str(REPO / "scripts/setup.d/50-containers.sh")], check=True)
        return cls(containers_dir())

    def run(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`podman ARGS`. Raise AssertionError with stdout and stderr if it fails and `check`."""
        return self._call(["podman", *args], check=check, timeout=timeout, stdin=stdin)

    def buildah(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self._call(["buildah", *args], check=True, timeout=timeout, stdin=None)

    def script(self, path: str, *args: str, timeout: float = 900) -> str:
        """Run one of the repository's scripts (they source the configuration themselves)."""
        return self._call([str(REPO / path), *args], check=True, timeout=timeout, stdin=None).stdout

    def _call(
        self, argv: list[str], *, check: bool, timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            argv,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            errors="replace",  # a command may print binary data (`caretaker dump` a file)
            timeout=timeout,
            cwd=REPO,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def exists(self, kind: str, name: str) -> bool:
        """`podman image|volume|container|pod exists NAME`."""
        return self.run(kind, "exists", name, check=False).returncode == 0

    def inspect(self, name: str) -> dict[str, Any]:
        """`podman inspect` of one container or image, as a dict."""
        found: list[dict[str, Any]] = json.loads(self.run("inspect", name).stdout)
        return found[0]

    def logs(self, container: str) -> str:
        done = self.run("logs", container, check=False)
        return done.stdout + done.stderr

    def ensure_rclone(self) -> str:
        """Build the rclone stand-in (seconds; apt reaches the Debian mirror) unless it exists;
        return its local name."""
        image = f"localhost/rclone-standin:{hashlib.sha256(RCLONE_RECIPE.encode()).hexdigest()[:12]}"
        if not self.exists("image", image):
            self.script("scripts/base-image")
            with tempfile.TemporaryDirectory() as context:
                (Path(context) / "Containerfile").write_text(RCLONE_RECIPE)
                self.buildah("bud", "--quiet", "--pull=never", "-t", image, context)
        return image

    def ensure_busybox(self) -> str:
        """Build the busybox stand-in once (FROM scratch, the host's static busybox)."""
        if not self.exists("image", BUSYBOX_IMAGE):
            with tempfile.TemporaryDirectory() as context:
                shutil.copy2("/bin/busybox", Path(context) / "busybox")
                (Path(context) / "Containerfile").write_text(
                    "FROM scratch\nCOPY busybox /bin/busybox\n"
                    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nCMD ["sh"]\n'
                )
                self.buildah("bud", "--quiet", "--pull=never", "-t", BUSYBOX_IMAGE, context)
        return BUSYBOX_IMAGE


def run_locked_down(
    podman: Podman,
    image: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    entrypoint: str | None = None,
    options: Sequence[str] = (),
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`podman run` the way a locked-down pod runs the image: read-only root with only /tmp
    writable, no capabilities, host network (the tests' servers listen on 127.0.0.1).
    `options` go to `podman run` (volumes, workdir). Raise AssertionError if it fails."""
    argv = [
        "run",
        "--rm",
        *(["--interactive"] if stdin is not None else []),
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        *options,
    ]
    for name, value in (env or {}).items():
        argv += ["--env", f"{name}={value}"]
    if entrypoint is not None:
        argv += ["--entrypoint", entrypoint]
    return podman.run(*argv, image, *args, stdin=stdin)
