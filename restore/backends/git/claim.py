"""The writer claim of a git repository: a ref of its own beside the backup branch.

`refs/caretaker/claims/<id>` (the id: 16 hex digits of SHA-256 over branch and folder, so
every URL spelling of one remote names the same ref) points at a parentless commit whose
tree holds one file, `claim.json`: the claim document of `restore.claims`. Taking,
renewing and releasing the claim are pushes with `--force-with-lease=<ref>:<expected
sha>` (empty when the ref must not exist yet): the server compares the ref with the
expected value under its ref lock, so of two writers exactly one wins, as with S3's
conditional writes. The version watchers compare is the commit's sha.

A renewal is one small push (three objects) per heartbeat; the commits it leaves behind
are unreachable at once and removed by the server's own garbage collection.
"""

from __future__ import annotations

import hashlib

from restore.backends.git.cmd import GitRunner, MissingRefError
from restore.backends.git.history import identity_env, raw_date
from restore.backends.git.remote import Remote
from restore.claims.record import ClaimRecord, Observed
from restore.clock import Clock
from restore.errors import LeaseHeldError

CLAIM_FILE = "claim.json"
_SEEN = "refs/caretaker/claim-seen"


def claim_ref(branch: str, path: str) -> str:
    digest = hashlib.sha256(f"{branch}\n{path}".encode()).hexdigest()[:16]
    return f"refs/caretaker/claims/{digest}"


class GitClaimSlot:
    """The ClaimSlot of one branch and folder of a git remote."""

    def __init__(self, remote: Remote, *, clock: Clock) -> None:
        self.remote = remote
        self.ref = claim_ref(remote.settings.branch, remote.settings.path)
        self._clock = clock
        self._cached: tuple[str, bytes] | None = None

    def describe(self) -> str:
        return self.remote.describe()

    def _runner(self) -> GitRunner:
        return self.remote.prepared(self.remote.home / "claim.git", partial=None)

    def read(self) -> Observed | None:
        with self.remote.locked("claim", wait=True):
            runner = self._runner()
            try:
                refspec = f"+{self.ref}:{_SEEN}"
                runner.run("fetch", "--quiet", "--no-tags", "origin", refspec, network="read the claim")
            except MissingRefError:
                return None
            sha = runner.text("rev-parse", _SEEN)
            if self._cached is None or self._cached[0] != sha:
                self._cached = (sha, runner.run("cat-file", "blob", f"{sha}:{CLAIM_FILE}"))
            return Observed(ClaimRecord.decode(self._cached[1]), sha)

    def _push(self, runner: GitRunner, expected: str, source: str) -> bool:
        try:
            runner.run(
                "push",
                "--quiet",
                "--no-verify",
                f"--force-with-lease={self.ref}:{expected}",
                "origin",
                f"{source}:{self.ref}",
                network="push the claim",
            )
        except LeaseHeldError:
            return False  # the ref is not what we expected: someone else's turn
        return True

    def _write(self, data: bytes, expected: str) -> str | None:
        with self.remote.locked("claim", wait=True):
            runner = self._runner()
            blob = runner.text("hash-object", "-w", "--stdin", stdin=data)
            tree = runner.text("mktree", stdin=f"100644 blob {blob}\t{CLAIM_FILE}\n".encode())
            settings = self.remote.settings
            who = (settings.author_name, settings.author_email, raw_date(self._clock()))
            sha = runner.text("commit-tree", tree, "-m", "caretaker writer claim", env=identity_env(who, who))
            if not self._push(runner, expected, sha):
                return None
        self._cached = (sha, data)
        return sha

    def create(self, data: bytes) -> str | None:
        return self._write(data, "")

    def replace(self, data: bytes, *, version: str) -> str | None:
        return self._write(data, version) if version else None

    def remove(self, *, version: str) -> bool:
        with self.remote.locked("claim", wait=True):
            return self._push(self._runner(), version, "")
