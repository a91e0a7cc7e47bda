"""examples/webdav-git run as a pod with `podman kube play`: a WebDAV server whose files live
in git, pushed over ssh with a deploy key from a Secret, restored by the init container.

The git host is a private sshd on 127.0.0.1 running `git-shell` for one deploy key, with its
own host key (tests/support/git_remotes.py); a client on the host writes through WebDAV (PUT,
MKCOL, DELETE with Python's http.client), the pod is stopped (the sidecar's final commit),
deleted with its volume and played again, and every file comes back byte for byte.

What the test changes in the example, besides the podman 4.3 patches of tests/e2e/pods.py
(`for_podman`: restartPolicy Never, host networking, no `ports`, `optional: false` on the
deploy key's Secret volume, Secrets through `podman secret create`):
- the WebDAV image `docker.io/rclone/rclone:1.68` (not pullable here) is mapped to a local
  stand-in built from the project's base image and Debian's rclone (tests/e2e/podman.py);
- the repository URL (a placeholder host) becomes the test's sshd, same branch; the Secret
  `webdav-git` holds the test's deploy key and known_hosts; the WebDAV users Secret is kept;
- the backup schedule `*/5 * * * *` becomes `@every 8s` (the test cannot wait 5 minutes);
- listen addresses: WebDAV's `:8080` and the sidecar's `CARETAKER_LISTEN` become free ports
  on 127.0.0.1 (host networking would otherwise bind every interface of the host).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.e2e.podman import RCLONE_IMAGE, REPO, Podman
from tests.e2e.pods import (
    Document,
    KubePod,
    backups_done,
    container_named,
    for_podman,
    free_address,
    load_manifest,
    pod_spec,
    replace_in_command,
    set_env,
)
from tests.support.git_remotes import SshServer
from tests.support.sidecar import wait_until

pytestmark = pytest.mark.e2e

MANIFEST = REPO / "examples/webdav-git/manifests.yaml"
EXAMPLE_URL = "git+ssh://git@git.example.com/backups/webdav.git#branch=webdav"
BRANCH = "webdav"
EVERY_SECONDS = 8


class WebDav:
    """A WebDAV client with basic auth; each method asserts the status a server must answer."""

    def __init__(self, address: str, user: str, password: str) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, quote(f"/{path}"), body=body, headers=self.headers)
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def answers(self) -> bool:
        try:
            return self.request("PROPFIND", "")[0] == 207
        except OSError:
            return False

    def put(self, path: str, data: bytes) -> None:
        status, body = self.request("PUT", path, data)
        assert status in (201, 204), (path, status, body)

    def mkcol(self, path: str) -> None:
        status, body = self.request("MKCOL", path)
        assert status == 201, (path, status, body)

    def delete(self, path: str) -> None:
        status, body = self.request("DELETE", path)
        assert status == 204, (path, status, body)

    def get(self, path: str) -> bytes:
        status, body = self.request("GET", path)
        assert status == 200, (path, status)
        return body


class Volume:
    """What the client wrote, to compare with what comes back: files and folders."""

    def __init__(self, client: WebDav) -> None:
        self.client = client
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()

    def mkcol(self, path: str) -> None:
        self.client.mkcol(path)
        self.dirs.add(path)

    def put(self, path: str, data: bytes) -> None:
        self.client.put(path, data)
        self.files[path] = data

    def delete(self, path: str) -> None:
        self.client.delete(path)
        self.files = {name: data for name, data in self.files.items() if not _within(name, path)}
        self.dirs = {name for name in self.dirs if not _within(name, path)}


def _within(name: str, path: str) -> bool:
    return name == path or name.startswith(f"{path}/")


def first_writes(volume: Volume) -> None:
    """Folders (one stays empty), text, a name with a space and umlauts, binary data, and a
    few dozen small files."""
    for folder in ("docs", "docs/drafts", "photos", "notes", "empty"):
        volume.mkcol(folder)
    volume.put("top.txt", b"at the top\n")
    volume.put("docs/readme.md", b"# Shared files\n\nkept in git by caretaker\n")
    volume.put("docs/drafts/plan f\u00fcr gr\u00f6\u00dfe.txt", "caf\u00e9 \u2615\n".encode())
    volume.put("docs/.hidden", b"dot file\n")
    volume.put("photos/cat.bin", os.urandom(256 * 1024))
    for number in range(40):
        volume.put(f"notes/{number:03}.txt", f"note {number}\n".encode())


def second_writes(volume: Volume) -> None:
    """A changed file, a deleted file, a deleted folder with its files, new ones."""
    volume.put("docs/readme.md", b"# Shared files\n\nchanged after the first backup\n")
    volume.delete("photos/cat.bin")
    volume.delete("docs/drafts")
    volume.delete("notes/007.txt")
    volume.put("photos/dog.bin", os.urandom(100 * 1024))
    volume.mkcol("music")
    volume.put("music/silence.raw", bytes(64 * 1024))


def git(remote: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "--git-dir", str(remote), *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def commits(remote: Path) -> list[str]:
    """The branch's commits, newest first; none while the branch does not exist."""
    heads = git(remote, "for-each-ref", "--format=%(refname)", f"refs/heads/{BRANCH}").split()
    return git(remote, "rev-list", BRANCH).split() if heads else []


def changes_of(remote: Path, commit: str) -> list[str]:
    """Paths a commit changed against its parent (the first commit: everything)."""
    return git(remote, "diff-tree", "--root", "-r", "--name-only", "--no-commit-id", commit).split("\n")


def after_a_backup(listen: str) -> None:
    """Wait for the next scheduled backup to finish; writing right after it leaves the whole
    interval before the next one."""
    done = backups_done(listen)
    wait_until(lambda: backups_done(listen) > done, 6 * EVERY_SECONDS, "a backup")


def final_backup(pod: KubePod) -> dict[str, object]:
    """The `backup.done` event of the backup the sidecar ran on SIGTERM."""
    lines = pod.podman.logs(pod.container("caretaker")).splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    start = next(
        i for i, e in enumerate(events) if e["event"] == "job.start" and e.get("reason") == "shutdown"
    )
    done: dict[str, object] = next(e for e in events[start:] if e["event"] == "backup.done")
    return done


def listing(pod: KubePod) -> tuple[set[str], set[str]]:
    """(files, folders) on the pod's data volume, caretaker's own state folder left out."""
    script = "cd /data && find . -mindepth 1 -path ./.caretaker -prune -o -printf '%y %P\\n'"
    lines = pod.podman.run("exec", pod.container("caretaker"), "sh", "-c", script).stdout.splitlines()
    entries = [line.split(" ", 1) for line in lines]
    return {name for kind, name in entries if kind == "f"}, {name for kind, name in entries if kind == "d"}


def webdav_users(docs: list[Document]) -> tuple[str, str]:
    """The WebDAV user and password the example's Secret names (placeholders we keep)."""
    secret = next(
        doc for doc in docs if doc["kind"] == "Secret" and doc["metadata"]["name"] == "webdav-users"
    )
    return secret["stringData"]["RCLONE_USER"], secret["stringData"]["RCLONE_PASS"]


def with_schedule(docs: list[Document], schedule: str) -> None:
    """Set the backup job's schedule in the sidecar's config.yaml (the ConfigMap)."""
    config_map = next(doc for doc in docs if doc["kind"] == "ConfigMap")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    (backup,) = [job for job in config["jobs"] if job["kind"] == "backup"]
    backup["schedule"] = schedule
    config_map["data"]["config.yaml"] = yaml.safe_dump(config, sort_keys=False)


Played = Callable[[Path], tuple[KubePod, WebDav, str]]


@pytest.fixture(scope="module")
def webdav_image(podman: Podman) -> str:
    return podman.ensure_rclone()


@pytest.fixture
def webdav_pod(
    podman: Podman, caretaker_image: str, webdav_image: str, git_host: SshServer, tmp_path: Path
) -> Iterator[Played]:
    """The example with the test's git host, deploy key and addresses; `make(known_hosts)`
    returns (pod, WebDAV client, sidecar address). Removed at the end, also on failure."""
    url = git_host.create("backups/webdav.git", branch=BRANCH)
    webdav, sidecar = free_address(), free_address()
    made: list[KubePod] = []

    def make(known_hosts: Path) -> tuple[KubePod, WebDav, str]:
        original = load_manifest(MANIFEST)
        assert EXAMPLE_URL in MANIFEST.read_text(), "the example's repository URL changed"
        with_schedule(original, f"@every {EVERY_SECONDS}s")
        docs, secrets = for_podman(original, app_env={"CARETAKER_REPOSITORY": url})
        spec = pod_spec(docs)
        server = container_named(spec, "webdav")
        assert server["image"] == RCLONE_IMAGE, "the example's WebDAV image changed"
        server["image"] = webdav_image
        replace_in_command(spec, "webdav", r"^:8080$", webdav)
        set_env(spec, "caretaker", "CARETAKER_LISTEN", sidecar)
        secrets["webdav-git"] = {
            "stringData": {
                "ssh-privatekey": git_host.deploy_key.read_text(),
                "known_hosts": known_hosts.read_text(),
            }
        }
        pod = KubePod(podman, tmp_path / f"webdav-{len(made)}.yaml", docs, secrets)
        pod.down()  # leftovers of an interrupted earlier run use the same names
        made.append(pod)
        return pod, WebDav(webdav, *webdav_users(original)), sidecar

    yield make
    for pod in made:
        print(pod.diagnostics())  # shown by pytest only when the test failed
        pod.down()


def test_files_written_through_webdav_come_back_from_git_in_a_new_pod(
    webdav_pod: Played, git_host: SshServer
) -> None:
    remote = git_host.repos / "backups/webdav.git"
    pod, client, sidecar = webdav_pod(git_host.known_hosts)

    code, output = pod.play()
    assert code == 0, output
    # The branch does not exist yet: a new repository, whose first boot the example allows.
    first = pod.restore_result("webdav")
    assert first["outcome"] == "first-boot"
    assert first["reason"].startswith("new repository: git+ssh://"), first["reason"]
    wait_until(client.answers, 30, "the WebDAV server")

    volume = Volume(client)
    after_a_backup(sidecar)
    assert len(commits(remote)) == 1, "the first backup creates the branch (an empty volume)"
    first_writes(volume)
    after_a_backup(sidecar)
    assert len(commits(remote)) == 2, "the backup after the first writes"
    after_a_backup(sidecar)
    assert len(commits(remote)) == 2, "a backup that changed nothing made no commit"

    after_a_backup(sidecar)
    second_writes(volume)
    pod.stop()  # the sidecar's final backup on SIGTERM commits the second writes
    assert pod.exit_code("caretaker") == 0
    history = commits(remote)
    assert len(history) == 3, "one commit per backup that changed something"
    assert "notes/007.txt" in changes_of(remote, history[0]), "the final commit has the deletions"
    tree = set(git(remote, "ls-tree", "-r", "--name-only", BRANCH).splitlines())
    assert set(volume.files) <= tree, "the final commit holds every file"
    assert not {"photos/cat.bin", "notes/007.txt"} & tree
    assert final_backup(pod)["snapshot"] == history[0][:12], "the final commit came on SIGTERM"

    # The pod and its volume go; a new pod's init container fills the new volume from git.
    pod.down()
    assert not pod.podman.exists("volume", "data")
    code, output = pod.play()
    assert code == 0, output
    result = pod.restore_result("webdav")
    assert result["outcome"] == "restored"
    assert history[0].startswith(result["snapshot"])
    wait_until(client.answers, 30, "the WebDAV server")
    assert listing(pod) == (set(volume.files), volume.dirs)
    for path, data in volume.files.items():
        assert client.get(path) == data, path


def test_a_wrong_host_key_keeps_webdav_from_starting(webdav_pod: Played, git_host: SshServer) -> None:
    """A man in the middle (known_hosts names another key): the restore refuses the host
    (exit 5, not retried), and the WebDAV server never starts on an empty volume."""
    pod, client, _ = webdav_pod(git_host.wrong_known_hosts())

    code, output = pod.play()

    assert code == 125, output
    assert "exited with code 5" in output, output
    assert pod.podman.inspect(pod.container("webdav"))["State"]["Status"] == "created"
    assert not client.answers()
