"""`before` / `after` hooks: a command or an HTTP call around a job, e.g. ask the app to
flush and pause writes before a backup and resume afterwards.

A failing `before` hook stops the run before the job (backing up a half-flushed database
is worse than no backup). `after` hooks all run, whatever happened before them, so a
"resume writes" hook is never skipped; the job's result is in CARETAKER_JOB_RESULT.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from restore.errors import CaretakerError
from restore.redaction import redact_url
from sidecar import jobs
from sidecar.settings.model import CommandSpec, Hook


class HookFailedError(CaretakerError):
    """A before/after hook failed; `cause` is the command or HTTP error."""

    reason = "hook-failed"

    def __init__(self, message: str, cause: CaretakerError) -> None:
        super().__init__(message)
        self.cause = cause


@dataclasses.dataclass(frozen=True, kw_only=True)
class HookContext:
    """What hooks run with: the data folder, the environment, and the run's cancel switch."""

    job: str
    cwd: Path
    environ: Mapping[str, str]
    cancel: jobs.Cancel
    groups: jobs.ProcessGroups


def run_before(hooks: Sequence[Hook], ctx: HookContext) -> None:
    """Run hooks in order. Raise HookFailedError at the first failure (later ones are skipped)."""
    for index, hook in enumerate(hooks):
        try:
            _run(hook, "before", index, ctx, {})
        except CaretakerError as error:
            raise HookFailedError(f"before[{index}] failed: {error}", error) from error


def run_after(hooks: Sequence[Hook], ctx: HookContext, result: str) -> None:
    """Run every hook, even after a failure. Raise HookFailedError naming the first failure."""
    first: HookFailedError | None = None
    for index, hook in enumerate(hooks):
        try:
            _run(hook, "after", index, ctx, {"CARETAKER_JOB_RESULT": result})
        except CaretakerError as error:
            first = first or HookFailedError(f"after[{index}] failed: {error}", error)
    if first is not None:
        raise first


def _run(hook: Hook, phase: str, index: int, ctx: HookContext, extra: dict[str, str]) -> None:
    log = structlog.get_logger().bind(hook=f"{phase}[{index}]")
    try:
        if isinstance(hook, CommandSpec):
            log.info("hook.start", command=list(hook.argv))
            variables = {"CARETAKER_JOB": ctx.job, "CARETAKER_JOB_PHASE": phase, **extra}
            jobs.command(
                spec=hook,
                cwd=ctx.cwd,
                environ=ctx.environ,
                variables=variables,
                cancel=ctx.cancel,
                groups=ctx.groups,
            )
        else:
            log.info("hook.start", method=hook.method, url=redact_url(hook.url))
            jobs.http(spec=hook)
    except CaretakerError as error:
        log.warning("hook.failed", error=str(error))
        raise
    log.info("hook.done")
