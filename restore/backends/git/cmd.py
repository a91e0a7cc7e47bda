"""Running git (through GitPython) in a private git dir, and translating its failures.

Every git process gets a controlled environment: no system or user config (a user's
`~/.gitconfig` with url rewrites or credential helpers must not change what a backup
does), no terminal prompts, only the URL's own transport allowed, and no replace refs.
Failures become caretaker errors at this edge: network trouble is transient (exit 4),
refused credentials, unknown repositories and bad host keys are permanent (exit 5), and
objects that fail git's checks are corrupt or hostile data (exit 7).

Every git process lives within the run's deadline: one still running when it passes (an
ssh or https remote that accepts and never answers, a fetch that stalls) is killed, and
so is one running when the run is stopped (SIGTERM, a cancelled job), whichever thread
waits for it. HTTP transfers slower than 1 KiB/s for a minute also end on their own
(git's low-speed limit), like an S3 read that times out.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import git
import structlog

from restore.backends.git.settings import GitSettings
from restore.deadline import Deadline
from restore.errors import (
    CaretakerError,
    IntegrityError,
    LeaseHeldError,
    LocalIOError,
    PermanentBackendError,
    RepositoryFullError,
    TransientBackendError,
)
from restore.redaction import redact_url

_LOG = structlog.get_logger()
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class MissingRefError(PermanentBackendError):
    """The remote has no such branch or commit (callers decide whether that is normal)."""


# Checked in this order; the first family with a match decides. Auth and host key
# problems come first because ssh also prints "Connection closed" after refusing.
_PERMANENT = re.compile(
    r"host key verification failed|remote host identification has changed|permission denied"
    r"|authentication failed|could not read (username|password)|invalid username or password"
    r"|repository not found|does not appear to be a git repository|not a git repository"
    r"|returned error: (401|403|404)|access denied"
    r"|terminal prompts disabled|unsupported protocol|transport '\w+' not allowed",
)
_CORRUPT = re.compile(
    r"fsck error|bad object|corrupt|did not receive expected object|invalid path|hash mismatch"
    r"|unable to read [0-9a-f]{40}|missing (blob|tree|commit) |index-pack failed|inflate"
    r"|bad tree object|badtree|baddotgit|hasdotdot|hasdotgit|fullpathname",
)
_TRANSIENT = re.compile(
    r"connection refused|could not resolve host|name or service not known|temporary failure"
    r"|timed out|network is unreachable|no route to host|connection reset|connection closed"
    r"|the remote end hung up|early eof|returned error: (429|5\d\d)|rpc failed|broken pipe"
    r"|kex_exchange_identification|unable to connect|failed to connect|couldn't connect",
)
_MISSING = re.compile(r"couldn't find remote ref|not our ref|no such remote ref")
# A push that is not a fast-forward (someone else pushed first) or whose lease is stale.
_MOVED = re.compile(r"! \[rejected\]|\(fetch first\)|\(non-fast-forward\)|\(stale info\)")
# git's generic advice after an ssh failure; the line before it says what went wrong.
_NOISE = re.compile(
    r"could not read from remote repository|make sure you have the correct access"
    r"|and the repository exists|^hint:|filtering not recognized by server",
    re.IGNORECASE,
)
_OBJECT = re.compile(r"\b[0-9a-f]{40}\b")
_LOCAL = re.compile(
    # signal 25 is SIGXFSZ: a git child exceeded the file size limit (RLIMIT_FSIZE).
    r"no space left|read-only file system|input/output error|disk quota|file too large"
    r"|died of signal 25"
)


_FAMILIES: tuple[tuple[re.Pattern[str], type[CaretakerError]], ...] = (
    (_LOCAL, LocalIOError),
    (_MISSING, MissingRefError),
    (_MOVED, LeaseHeldError),
    (_PERMANENT, PermanentBackendError),
    (_CORRUPT, IntegrityError),
    (_TRANSIENT, TransientBackendError),
)


def stderr_of(error: git.GitCommandError) -> str:
    """git's own words from a GitCommandError: the lines naming an object, then the last ones."""
    text = str(error.stderr or "").strip()
    text = text.removeprefix("stderr:").strip().strip("'")
    lines = []
    for raw in text.splitlines():
        line = "".join(c for c in raw if c.isprintable()).strip().removeprefix("remote:").strip()
        if line and not _NOISE.search(line) and line not in lines:
            lines.append(line)
    naming = [line for line in lines if _OBJECT.search(line)][:2]
    chosen = naming + [line for line in lines[-3:] if line not in naming]
    return "; ".join(chosen)[-500:]


def _remote_disk_trouble(error: git.GitCommandError) -> bool:
    """Whether the server said its disk is full or read-only (`remote: ... No space left`)."""
    lines = re.split(r"[\r\n]", str(error.stderr or ""))
    return any("remote:" in line and _LOCAL.search(line.lower()) for line in lines)


def translate(error: git.GitCommandError, *, remote: str, action: str) -> CaretakerError:
    """Map a failed network git command to the caretaker error a user must act on.

    Disk trouble the server reports (`remote: ... No space left`) is the repository's
    (exit 12); the same words from our own git are the local state dir's (exit 10).
    """
    said = stderr_of(error) or f"git exited with {error.status}"
    lowered = said.lower()
    where = f"git remote {remote}: {action} failed: {said}"
    if _remote_disk_trouble(error):
        return RepositoryFullError(where)
    for pattern, kind in _FAMILIES:
        if pattern.search(lowered):
            if kind is LeaseHeldError:
                return LeaseHeldError(
                    f"git remote {remote}: branch moved while we worked (another writer pushed "
                    f"first); nothing was overwritten, the next run starts from the new tip: {said}"
                )
            return kind(where)
    return PermanentBackendError(where)


# Looked up once here: the child between fork and exec must not load libraries.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child before exec: if caretaker is SIGKILLed, its git children die too.

    Otherwise an orphaned checkout would go on writing into a staging folder that the
    next run is already cleaning up.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class GitRunner:
    """Runs git commands against one git dir with a fixed environment, within a deadline."""

    def __init__(
        self,
        git_dir: Path,
        environ: Mapping[str, str],
        *,
        remote: str,
        work_tree: Path | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self.git_dir = git_dir
        self.remote = remote
        self.work_tree = work_tree
        self.deadline = deadline or Deadline()
        self._base = dict(environ)
        self._environ = {
            "GIT_DIR": str(git_dir),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_NO_REPLACE_OBJECTS": "1",
            "GIT_LITERAL_PATHSPECS": "1",
            # The state dir may belong to another uid (a volume's owner); it is ours by
            # construction, so git's ownership check would only get in the way.
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "safe.directory",
            "GIT_CONFIG_VALUE_0": "*",
            "GIT_HTTP_LOW_SPEED_LIMIT": "1024",
            "GIT_HTTP_LOW_SPEED_TIME": "60",
            **environ,
        }
        if work_tree is not None:
            self._environ["GIT_WORK_TREE"] = str(work_tree)

    def with_work_tree(self, work_tree: Path | None) -> GitRunner:
        """The same git dir, with `work_tree` as the folder files are read from or written to."""
        return GitRunner(
            self.git_dir, self._base, remote=self.remote, work_tree=work_tree, deadline=self.deadline
        )

    def run(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        network: str | None = None,
    ) -> bytes:
        """Run `git ARGS` and return its stdout.

        `network` names the action when the command talks to the remote: its failures are
        translated with `translate`. Local failures raise LocalIOError for disk trouble and
        CaretakerError (exit 1) otherwise: they are bugs or broken state, not user errors.
        """
        _LOG.debug("git.run", args=list(args), git_dir=str(self.git_dir))
        what = f"git remote {redact_url(self.remote)}: {network}" if network else f"git {args[0]}"
        try:
            return self._execute(["git", *args], stdin, {**self._environ, **(env or {})}, what)
        except git.GitCommandError as error:
            if network is not None:
                raise translate(error, remote=self.remote, action=network) from error
            raise self._local_failure(args[0], error) from error

    def _local_failure(self, command: str, error: git.GitCommandError) -> CaretakerError:
        """LocalIOError for disk trouble, CaretakerError (exit 1: a bug or broken state) else."""
        said = stderr_of(error)
        if _LOCAL.search(said.lower()):
            return LocalIOError(f"git {command} failed: {said}")
        return CaretakerError(f"git {command} failed in {self.git_dir}: {said}")

    def _execute(self, command: list[str], stdin: bytes | None, env: dict[str, str], what: str) -> bytes:
        """Run one git process; raise GitCommandError if it fails.

        If the deadline passes, the run is stopped, or we are interrupted (SIGTERM becomes
        an exception in the main thread) the child is killed before the error travels on:
        a checkout must not keep writing into a staging folder that the error path is
        about to remove. Raise DeadlineExceededError (naming `what`) or the stop's error.
        """
        window = self.deadline.window(what)
        with contextlib.ExitStack() as stack:
            feed = None
            if stdin is not None:
                feed = stack.enter_context(tempfile.TemporaryFile())
                feed.write(stdin)
                feed.seek(0)
            # cwd is the work tree's top: paths on stdin are relative to it.
            handle = git.Git(self.work_tree or self.git_dir).execute(
                command, istream=feed, env=env, as_process=True, preexec_fn=_die_with_parent
            )
            process = handle.proc
            assert process is not None  # noqa: S101 - as_process always starts one
            try:
                out, err = self.deadline.communicate(process, window, what)
            except BaseException:
                process.kill()
                process.wait()
                raise
        if process.returncode != 0:
            raise git.GitCommandError(command, process.returncode, err, out)
        return bytes(out)

    @contextlib.contextmanager
    def piped(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        """Run `git ARGS` with pipes to its stdin and stdout, for a streaming exchange
        (`cat-file --batch`, `fast-import`). Leaving the block closes its stdin and waits:
        raise LocalIOError or CaretakerError (see `run`) if it failed, also when it stopped
        reading early (a block's BrokenPipeError). A block that fails otherwise kills it."""
        _LOG.debug("git.run", args=list(args), git_dir=str(self.git_dir))
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(
                ["git", *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                env=self._environ,
                cwd=self.work_tree or self.git_dir,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, looked up before the fork
            )
            broken = False
            try:
                yield process
            except BrokenPipeError:
                broken = True  # git stopped reading: its exit status and stderr say why
            except BaseException:
                process.kill()
                process.wait()
                raise
            finally:
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        # Flushing into a git that is gone must not hide what went wrong.
                        with contextlib.suppress(BrokenPipeError):
                            stream.close()
            if process.wait() != 0 or broken:
                errors.seek(0)
                raise self._local_failure(
                    args[0], git.GitCommandError(["git", *args], process.returncode, errors.read())
                )

    def text(self, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> str:
        """Run a local git command and return its stdout as text, stripped."""
        return self.run(*args, stdin=stdin, env=env).decode("utf-8", "surrogateescape").strip()


# Bytes go in and out unchanged whatever a `.gitattributes` in the data says: no line-ending
# conversion, no clean/smudge filters, no `$Id$` expansion, no re-encoding.
_ATTRIBUTES = "* -text -eol -crlf -filter -ident -working-tree-encoding\n"


_LOCAL_UPLOAD_PACK = "git -c uploadpack.allowFilter=true -c uploadpack.allowAnySHA1InWant=true upload-pack"


def _quote(value: str) -> str:
    if "\n" in value or "\0" in value:
        raise CaretakerError(f"cannot write {value!r} into a git config file")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def private_config(settings: GitSettings, *, partial: str | None, compression: int) -> str:
    """The whole config of a private git dir, rewritten on every use (never trusted as found).

    `partial` is a partial-clone filter (`blob:none`, `tree:0`): servers that support it
    send only what is needed; others ignore it and send everything, which still works.
    """
    lines = [
        "[core]",
        "\trepositoryformatversion = 1",
        "\tbare = true",
        "\tfilemode = true",
        "\tsymlinks = true",
        "\tignorecase = false",
        "\tlogallrefupdates = false",
        "\tautocrlf = false",
        f"\tcompression = {compression}",
        # Loose objects are only the staging area of the next push, which compresses again.
        "\tlooseCompression = 1",
        "\tfsmonitor = false",
        "\tuntrackedCache = false",
        "\thooksPath = /dev/null",
        "[fetch]\n\tfsckObjects = true\n\twriteCommitGraph = false",
        "[transfer]\n\tfsckObjects = true",
        "[gc]\n\tpruneExpire = now\n\tautoPackLimit = 8\n\tautoDetach = false",
        "[protocol]\n\tversion = 2",
        '[remote "origin"]',
        f"\turl = {_quote(settings.remote)}",
        f"\tfetch = {_quote(f'+{settings.ref}:{settings.tracking_ref}')}",
    ]
    if settings.remote.startswith("file://"):
        # The "server" of a file:// remote is a local upload-pack of ours: let it send only
        # what is asked for (commits without their files, one commit by its sha).
        lines.append(f"\tuploadpack = {_quote(_LOCAL_UPLOAD_PACK)}")
    if partial is not None:
        lines += [
            "\tpromisor = true",
            f"\tpartialclonefilter = {partial}",
            "[extensions]",
            "\tpartialClone = origin",
        ]
    return "\n".join(lines) + "\n"


def prepare(runner: GitRunner, config: str) -> None:
    """Create the private git dir if needed and (re)write its config and attributes."""
    git_dir = runner.git_dir
    if not (git_dir / "HEAD").exists():
        git_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        runner.with_work_tree(None).run("init", "--quiet", "--bare", "--template=")
    (git_dir / "config").write_text(config, encoding="utf-8")
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info" / "attributes").write_text(_ATTRIBUTES, encoding="utf-8")
