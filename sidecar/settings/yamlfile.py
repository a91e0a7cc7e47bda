"""Read the YAML config file (see docs/sidecar.md for the schema) into typed values.

Unknown keys are errors: a misspelt `retention:` must not silently leave a repository
unpruned. Each problem names its full key, e.g. `jobs.nightly.before[0].http.url`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from restore import values
from restore.backends.registry import credentials_problem, scheme_problem
from restore.errors import Problem
from restore.notify import Notify
from restore.redaction import redact_url
from restore.retention import KEEP_RULES, RetentionPolicy
from sidecar.settings.fields import Fields
from sidecar.settings.model import (
    JOB_KINDS,
    Action,
    BackupAction,
    CommandSpec,
    CopyAction,
    Defaults,
    Hook,
    HttpSpec,
    JobConfig,
    JobKind,
    PruneAction,
    VerifyAction,
    check_http_url,
)
from sidecar.settings.notifying import file_notify
from sidecar.settings.schedule import Schedule, check_timezone, parse_schedule

_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
HOOK_TIMEOUT = timedelta(minutes=5)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileSettings:
    """What the file says; top-level values are None where the file is silent."""

    repository: str | None = None
    path: str | None = None
    listen: str | None = None
    rpo: timedelta | None = None
    shutdown_grace: timedelta | None = None
    backup_on_shutdown: bool | None = None
    notify: Notify | None = None
    claim_heartbeat: timedelta | None = None
    claim_expiry: timedelta | None = None
    unready_on_standby: bool | None = None
    jobs: tuple[JobConfig, ...] = ()


def read_config_file(path: Path, problems: list[Problem]) -> FileSettings:
    """Parse the file at `path`; problems (unreadable, bad YAML, bad values) go to `problems`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        problems.append(Problem("--config (CARETAKER_CONFIG)", str(path), error.strerror or str(error)))
        return FileSettings()
    except yaml.YAMLError as error:
        problems.append(Problem("--config (CARETAKER_CONFIG)", str(path), f"not valid YAML: {error}"))
        return FileSettings()
    return parse_document(data, problems)


def parse_document(data: Any, problems: list[Problem]) -> FileSettings:
    top = Fields(data, "", problems)
    shutdown = top.child("shutdown")
    claim = top.child("claim")
    settings = FileSettings(
        repository=top.string("repository"),
        path=top.string("path"),
        listen=top.string("listen"),
        rpo=top.optional_duration("rpo"),
        shutdown_grace=shutdown.optional_duration("grace", allow_zero=True),
        backup_on_shutdown=shutdown.optional_boolean("backup_on_shutdown"),
        notify=file_notify(top),
        claim_heartbeat=claim.optional_duration("heartbeat"),
        claim_expiry=claim.optional_duration("expiry"),
        unready_on_standby=claim.optional_boolean("unready_on_standby"),
        jobs=_jobs(top, _defaults(top.child("defaults")), problems),
    )
    shutdown.finish()
    claim.finish()
    top.finish()
    if not settings.jobs and not any(p.key.startswith("jobs") for p in problems):
        problems.append(Problem("jobs", None, "at least one job is required"))
    return settings


def _defaults(fields: Fields) -> Defaults:
    base = Defaults()
    timezone = fields.string("timezone", base.timezone) or base.timezone
    _check_timezone(fields, "timezone", timezone)
    defaults = Defaults(
        timezone=timezone,
        jitter=fields.duration("jitter", base.jitter, allow_zero=True),
        retries=fields.integer("retries", base.retries),
        retry_backoff=fields.duration("retry_backoff", base.retry_backoff, allow_zero=True),
        misfire_grace=fields.duration("misfire_grace", base.misfire_grace),
    )
    fields.finish()
    return defaults


def _jobs(top: Fields, defaults: Defaults, problems: list[Problem]) -> tuple[JobConfig, ...]:
    entries = list(top.items("jobs"))
    jobs = [job for index, raw in entries if (job := _job(index, raw, defaults, problems))]
    # Jobs dropped for their own problems still count as existing, so that one mistake is
    # not echoed as "no job has this name" in every job that chains to it.
    names = [hint for _, raw in entries if (hint := job_name_hint(raw))]
    check_job_graph(jobs, names, problems)
    return tuple(jobs)


def check_job_graph(jobs: list[JobConfig], names: list[str], problems: list[Problem]) -> None:
    """Names unique; `then` names existing jobs one level deep; every job runs somehow.

    A `then` that names no job (`prun`) is reported as such, with the name it resembles;
    that job's missing schedule is then only a consequence and is not reported besides.
    """
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems.extend(Problem(f"jobs.{n}.name", n, "duplicate job name") for n in duplicates)
    by_name = {job.name: job for job in jobs}
    chained = {target for job in jobs for target in job.then}
    for job in jobs:
        for target in job.then:
            if target not in names:
                guess = difflib.get_close_matches(target, names, n=1)
                chained.update(guess)
                hint = f" (did you mean {guess[0]}?)" if guess else ""
                problems.append(Problem(f"jobs.{job.name}.then", target, f"no job named {target}{hint}"))
            elif target in by_name and (by_name[target].then or target == job.name):
                problems.append(
                    Problem(f"jobs.{job.name}.then", target, "a chained job cannot chain further")
                )
    problems.extend(
        Problem(f"jobs.{job.name}.schedule", None, "is required (or name this job in another job's `then`)")
        for job in jobs
        if job.schedule is None and job.name not in chained
    )


def _job(index: int, raw: Any, defaults: Defaults, problems: list[Problem]) -> JobConfig | None:
    hint = job_name_hint(raw)
    fields = Fields(raw, f"jobs.{hint}" if hint else f"jobs[{index}]", problems)
    before = len(problems)
    name = fields.string("name", required=True) or ""
    if name and not _NAME.fullmatch(name):
        fields.problem("name", name, "use lowercase letters, digits and '-' (at most 63)")
    kind, judged_as = _kind(fields)
    job = functools.partial(
        JobConfig,
        name=name,
        schedule=_schedule(fields, defaults),
        run_on_start=fields.boolean("run_on_start", default=False),
        retries=fields.integer("retries", defaults.retries),
        retry_backoff=fields.duration("retry_backoff", defaults.retry_backoff, allow_zero=True),
        misfire_grace=fields.duration("misfire_grace", defaults.misfire_grace),
        before=_hooks(fields, "before"),
        after=_hooks(fields, "after"),
        then=fields.strings("then"),
        notify=file_notify(fields),
    )
    if judged_as is None:
        return None  # without a kind, its other keys cannot be judged
    action, timeout = _action(judged_as, fields)
    fields.finish()
    if len(problems) > before or action is None or kind is None:
        return None
    return job(kind=kind, action=action, timeout=timeout)


def _kind(fields: Fields) -> tuple[JobKind | None, JobKind | None]:
    """The job's kind, and the kind its other keys are judged as: for a misspelt kind
    (`verfy`) the one it resembles, so that its keys' problems come in the same round."""
    text = fields.string("kind", required=True)
    kind = next((k for k in JOB_KINDS if k == text), None)
    if text is None or kind is not None:
        return kind, kind
    guess = next(iter(difflib.get_close_matches(text, JOB_KINDS, n=1)), None)
    hint = f" (did you mean {guess}?)" if guess else ""
    fields.problem("kind", text, f"must be one of {', '.join(JOB_KINDS)}{hint}")
    return None, next((k for k in JOB_KINDS if k == guess), None)


def job_name_hint(raw: Any) -> str | None:
    """The job's name if it has a valid one, to name its keys in problems."""
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) and _NAME.fullmatch(name) else None


def _schedule(fields: Fields, defaults: Defaults) -> Schedule | None:
    """The job's schedule; a bad time zone and a bad expression are both reported."""
    timezone = fields.string("timezone", defaults.timezone) or defaults.timezone
    if not _check_timezone(fields, "timezone", timezone):
        timezone = Defaults().timezone  # so that the expression is still judged
    jitter = fields.duration("jitter", defaults.jitter, allow_zero=True)
    text = fields.string("schedule")
    if text is None:
        return None
    try:
        return parse_schedule(text, timezone=timezone, jitter=jitter)
    except ValueError as error:
        fields.problem("schedule", text, str(error))
        return None


def _check_timezone(fields: Fields, name: str, timezone: str) -> bool:
    try:
        check_timezone(timezone)
    except ValueError as error:
        fields.problem(name, timezone, str(error))
        return False
    return True


def _action(kind: JobKind, fields: Fields) -> tuple[Action | None, timedelta | None]:
    """Read the kind's own keys. Return the action and the job-level timeout (backup only)."""
    if kind == "backup":
        action = BackupAction(
            excludes=fields.strings("excludes"),
            allow_empty=fields.boolean("allow_empty", default=False),
            skip_unchanged=fields.boolean("skip_unchanged", default=False),
        )
        return action, fields.optional_duration("timeout")
    if kind in {"prune", "verify", "copy"} and fields.has("timeout"):
        fields.problem(
            "timeout",
            fields.raw("timeout"),
            f"not supported for {kind} jobs: they cannot be stopped half-way",
        )
    if kind == "prune":
        return _prune(fields.child("keep")), None
    if kind == "verify":
        return VerifyAction(read_data=fields.fraction("read_data", 0.0)), None
    if kind == "copy":
        return _copy(fields), None
    if kind == "command":
        return command_spec(fields, timedelta(hours=1)), None
    return http_spec(fields), None


def _prune(keep: Fields) -> PruneAction | None:
    before = len(keep.problems)
    counts = {rule: keep.integer(rule, 0) for rule in KEEP_RULES}
    policy = RetentionPolicy(**counts, within=keep.optional_duration("within"))
    keep.finish()
    if len(keep.problems) > before:
        return None
    if policy.keeps_everything:
        keep.problem_at(keep.where, None, "set at least one rule: " + ", ".join([*KEEP_RULES, "within"]))
        return None
    return PruneAction(policy=policy)


def _copy(fields: Fields) -> CopyAction | None:
    to = fields.string("to", required=True)
    if to is None:
        return None
    problem = scheme_problem(to) or credentials_problem(to)
    if problem is not None:
        fields.problem("to", redact_url(to), problem)
        return None
    return CopyAction(to=to)


def command_spec(fields: Fields, default_timeout: timedelta) -> CommandSpec | None:
    argv = fields.strings("command", required=True)
    workdir = fields.string("workdir")
    spec = CommandSpec(
        argv=argv,
        env=fields.string_map("env"),
        inherit_env=_env_names(fields, "inherit_env"),
        workdir=Path(workdir) if workdir else None,
        timeout=fields.duration("timeout", default_timeout),
    )
    return spec if argv else None


def http_spec(fields: Fields) -> HttpSpec | None:
    url = fields.string("url", required=True)
    if url is not None:
        try:
            check_http_url(url)
        except ValueError as error:
            fields.problem("url", url, str(error))
            url = None
    method = (fields.string("method", "GET") or "GET").upper()
    if method not in _METHODS:
        fields.problem("method", method, f"must be one of {', '.join(_METHODS)}")
    status = fields.read("expect_status", values.bounded(100, 599)) or 200
    timeout = fields.duration("timeout", timedelta(seconds=10))
    follow = fields.boolean("follow_redirects", default=False)
    if url is None:
        return None
    return HttpSpec(url=url, method=method, expect_status=status, timeout=timeout, follow_redirects=follow)


def _env_names(fields: Fields, name: str) -> tuple[str, ...]:
    names = fields.strings(name)
    for bad in (n for n in names if not _ENV_NAME.fullmatch(n)):
        fields.problem(name, bad, "must list environment variable names (letters, digits, '_')")
    return names


def _hooks(fields: Fields, name: str) -> tuple[Hook, ...]:
    hooks: list[Hook] = []
    for index, raw in fields.items(name):
        hook = Fields(raw, f"{fields.key(name)}[{index}]", fields.problems)
        spec: Hook | None
        if hook.has("http") and not hook.has("command"):
            http = hook.child("http")
            spec = http_spec(http)
            http.finish()
        elif hook.has("command") and not hook.has("http"):
            spec = command_spec(hook, HOOK_TIMEOUT)
        else:
            hook.problem_at(hook.where, raw, "a hook needs exactly one of `command` or `http`")
            continue
        hook.finish()
        if spec is not None:
            hooks.append(spec)
    return tuple(hooks)
