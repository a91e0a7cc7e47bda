"""Real git remotes for tests: a bare repository, `git daemon`, an OpenSSH server, smart HTTP.

Everything listens on 127.0.0.1 on a free port and is stopped by its `stop()` (the
fixtures in tests/integration/test_git_remotes.py always call it). The sshd is a private one
with its own config, host key and deploy key, running `git-shell` for the key only; the
client side gets a known_hosts file with that host key, so strict checking really checks.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BRANCH = "backups"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bare_repository(path: Path) -> Path:
    """Create an empty bare repository at `path` (its parents too) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(path)], check=True)
    return path


def file_remote(tmp_path: Path) -> str:
    """A fresh bare repository under `tmp_path`; return its `git+file://` URL (branch `backups`)."""
    bare = bare_repository(Path(tempfile.mkdtemp(dir=tmp_path, prefix="remote-")) / "repo.git")
    return f"git+file://{bare}#branch={BRANCH}"


def git_env(state_dir: Path) -> dict[str, str]:
    """The environment a caretaker process needs for git tests: a private state dir."""
    return {"CARETAKER_GIT_STATE_DIR": str(state_dir)}


class GitDaemon:
    """`git daemon` serving every repository under `root`, push enabled."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.log = root.parent / f"git-daemon-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git+git://127.0.0.1:{self.port}/{name}#branch={BRANCH}"

    def create(self, name: str) -> str:
        bare_repository(self.root / name)
        return self.url(name)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    "git",
                    "daemon",
                    "--listen=127.0.0.1",
                    f"--port={self.port}",
                    f"--base-path={self.root}",
                    "--export-all",
                    "--enable=receive-pack",
                    "--reuseaddr",
                    "--informative-errors",
                    str(self.root),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _wait_for_port(self.port, self._process, self.log)

    def stop(self) -> None:
        _stop(self._process)
        self._process = None


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
    )
    return Path(f"{path}.pub").read_text().strip()


class SshServer:
    """A private sshd on 127.0.0.1 that lets one ed25519 deploy key run git-shell."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.repos = root / "repos"
        self.host_key = root / "host_ed25519"
        self.deploy_key = root / "deploy_ed25519"
        self.known_hosts = root / "known_hosts"
        self.log = root / "sshd.log"
        self._process: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        self.repos.mkdir(parents=True, exist_ok=True)
        host_pub = _keygen(self.host_key, "caretaker-test-host")
        deploy_pub = _keygen(self.deploy_key, "caretaker-test-deploy")
        (self.root / "authorized_keys").write_text(
            f'command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"",restrict {deploy_pub}\n'
        )
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub.split()[:2])}\n")
        (self.root / "sshd_config").write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "LogLevel VERBOSE",
                ]
            )
            + "\n"
        )

    def wrong_known_hosts(self) -> Path:
        """A known_hosts file naming another key for this server (a man in the middle)."""
        other = self.root / "other_host_ed25519"
        if not other.exists():
            _keygen(other, "impostor")
        path = self.root / "wrong_known_hosts"
        key = " ".join(Path(f"{other}.pub").read_text().split()[:2])
        path.write_text(f"[127.0.0.1]:{self.port} {key}\n")
        return path

    def url(self, name: str, branch: str = BRANCH) -> str:
        user = (
            os.environ.get("USER")
            or subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        )
        return f"git+ssh://{user}@127.0.0.1:{self.port}{self.repos / name}#branch={branch}"

    def create(self, name: str, branch: str = BRANCH) -> str:
        bare_repository(self.repos / name)
        return self.url(name, branch)

    def env(self) -> dict[str, str]:
        return {
            "CARETAKER_GIT_SSH_KEY_FILE": str(self.deploy_key),
            "CARETAKER_GIT_KNOWN_HOSTS_FILE": str(self.known_hosts),
        }

    def start(self) -> None:
        if not self.host_key.exists():
            self.prepare()
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation dir
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        self._process = subprocess.Popen(
            [sshd, "-D", "-f", str(self.root / "sshd_config"), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.log.touch()
        _wait_for_port(self.port, self._process, self.log)

    def stop(self) -> None:
        _stop(self._process)
        self._process = None


class _HttpBackend(BaseHTTPRequestHandler):
    """`git http-backend` as CGI behind basic auth (one user and token)."""

    server: HttpGitServer

    def log_message(self, format: str, *args: object) -> None:
        self.server.requests.append(self.requestline)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        expected = base64.b64encode(f"{self.server.username}:{self.server.token}".encode()).decode()
        if self.headers.get("Authorization") == f"Basic {expected}":
            return True
        self.server.auth_failures += 1 if self.headers.get("Authorization") else 0
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _cgi(self) -> None:
        if not self._authorized():
            return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "REMOTE_USER": self.server.username,
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        body = self._body() if self.command == "POST" else b""
        env["CONTENT_LENGTH"] = str(len(body))
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        headers = [line.split(b": ", 1) for line in head.split(b"\r\n") if b": " in line]
        status = next((int(v.split()[0]) for k, v in headers if k.lower() == b"status"), 200)
        self.send_response(status)
        for key, value in headers:
            if key.lower() != b"status":
                self.send_header(key.decode(), value.decode())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _cgi  # noqa: N815 - http.server's naming
    do_POST = _cgi  # noqa: N815


class HttpGitServer(ThreadingHTTPServer):
    """Smart HTTP on 127.0.0.1 with basic auth; push allowed for the authenticated user."""

    def __init__(self, root: Path, *, username: str = "backup", token: str = "s3cr3t-t0ken") -> None:
        super().__init__(("127.0.0.1", 0), _HttpBackend)
        self.root = root
        self.username = username
        self.token = token
        self.requests: list[str] = []
        self.auth_failures = 0
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def create(self, name: str) -> str:
        bare = bare_repository(self.root / name)
        subprocess.run(["git", "-C", str(bare), "config", "http.receivepack", "true"], check=True)
        return f"git+http://127.0.0.1:{self.port}/{name}#branch={BRANCH}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
