"""Merge flags (each with its CARETAKER_* twin), the optional YAML file and defaults into one
`SidecarConfig`, reporting every problem at once.

Precedence: a flag or its environment twin, then the file, then the default. The
environment-only flags that describe jobs (`--schedule`, `--keep-*`, ...) are refused
together with `--config`: two sources of jobs would leave the user guessing which one runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from restore import values
from restore.backends.registry import password_problem, repository_problems
from restore.claims.holder import DEFAULT_TIMING, Timing
from restore.commands.options import (
    DEFAULT_PATH,
    PASSWORD_VARIABLE,
    claim_timing,
    destination_encryption,
    encryption_from,
)
from restore.errors import ConfigError, Problem
from restore.retention import NO_RULE, RetentionPolicy
from sidecar.settings.model import (
    DEFAULT_GRACE,
    DEFAULT_LISTEN,
    BackupAction,
    CopyAction,
    Defaults,
    JobConfig,
    Listen,
    PruneAction,
    SidecarConfig,
    VerifyAction,
    parse_listen,
)
from sidecar.settings.notifying import global_notify
from sidecar.settings.options import Flags, flag_key
from sidecar.settings.schedule import Schedule, parse_schedule
from sidecar.settings.yamlfile import FileSettings, read_config_file

T = TypeVar("T")


def load(flags: Flags, environ: Mapping[str, str] | None = None) -> SidecarConfig:
    """Build the effective configuration. Raise ConfigError listing every problem found.

    `environ` is checked with the repository: the backend's own variables (credentials
    files, S3 tuning, git settings) are judged now, not at the first job.
    """
    problems: list[Problem] = []
    if flags.config is not None:
        file = read_config_file(flags.config, problems)
        _refuse_job_flags(flags, problems)
        jobs, source = file.jobs, str(flags.config)
    else:
        file = FileSettings()
        jobs, source = env_jobs(flags, problems), "environment"
    config = _merged(flags, file, environ or {}, problems, jobs=jobs, source=source)
    if config.backup_on_shutdown and not any(job.kind == "backup" for job in jobs):
        problems.append(Problem("shutdown.backup_on_shutdown", True, "there is no backup job"))
    if problems:
        raise ConfigError(problems)
    return config


def problems_beside_file(flags: Flags, environ: Mapping[str, str]) -> list[Problem]:
    """What `load` would find wrong in the flags and environment of a sidecar whose config
    file is not at hand (`caretaker inject --config-map`: it is in a ConfigMap)."""
    problems: list[Problem] = []
    _refuse_job_flags(flags, problems)
    _merged(flags, FileSettings(), environ, problems, jobs=(), source=str(flags.config))
    return problems


def _merged(
    flags: Flags,
    file: FileSettings,
    environ: Mapping[str, str],
    problems: list[Problem],
    *,
    jobs: tuple[JobConfig, ...],
    source: str,
) -> SidecarConfig:
    """Flags over the file over the defaults; problems go to `problems`."""
    encryption, refused = encryption_from(
        flags.password_file, environ.get(PASSWORD_VARIABLE), insecure=flags.insecure_no_encryption
    )
    problems += refused
    to_encryption, to_refused = destination_encryption(environ)
    if any(job.kind == "copy" for job in jobs):
        problems += to_refused
    config = SidecarConfig(
        repository=_repository(flags, file, environ, problems),
        path=(flags.path or Path(file.path or DEFAULT_PATH)).absolute(),
        listen=_listen(flags, file, problems),
        jobs=jobs,
        rpo=_duration("rpo", flags.rpo, problems) or file.rpo,
        shutdown_grace=_first(
            _duration("shutdown-grace", flags.shutdown_grace, problems, allow_zero=True),
            file.shutdown_grace,
            DEFAULT_GRACE,
        ),
        backup_on_shutdown=_first(flags.backup_on_shutdown, file.backup_on_shutdown, False),
        notify=global_notify(flags, file.notify, problems),
        claim=_claim(flags, file, problems),
        unready_on_standby=_first(flags.unready_on_standby, file.unready_on_standby, False),
        source=source,
        encryption=encryption,
        to_encryption=to_encryption,
    )
    if (git := password_problem(config.repository, encryption)) is not None:
        problems.append(git)
    for job in jobs:
        if isinstance(job.action, CopyAction) and (git := password_problem(job.action.to, to_encryption)):
            problems.append(git)
    return config


def _first(flag: T | None, file: T | None, default: T) -> T:
    if flag is not None:
        return flag
    return default if file is None else file


def _flag(option: str, text: str | None, rule: values.Rule[T], problems: list[Problem]) -> T | None:
    """A flag's (or its twin's) value judged by `rule`; None when absent or (a problem) bad."""
    if text is None:
        return None
    try:
        return rule(text)
    except ValueError as error:
        problems.append(Problem(flag_key(option), text, str(error)))
        return None


def _duration(
    option: str, text: str | None, problems: list[Problem], *, allow_zero: bool = False
) -> timedelta | None:
    return _flag(option, text, values.zero_or_duration if allow_zero else values.duration, problems)


def _claim(flags: Flags, file: FileSettings, problems: list[Problem]) -> Timing:
    default = DEFAULT_TIMING
    heartbeat = _first(
        _duration("claim-heartbeat", flags.claim_heartbeat, problems),
        file.claim_heartbeat,
        timedelta(seconds=default.heartbeat_seconds),
    )
    expiry = _first(
        _duration("claim-expiry", flags.claim_expiry, problems),
        file.claim_expiry,
        timedelta(seconds=default.expiry_seconds),
    )
    key = flag_key("claim-expiry") if flags.claim_expiry else "claim.expiry"
    try:
        return claim_timing(heartbeat, expiry, key=key)
    except ConfigError as error:
        problems.extend(error.problems)
        return default


def _repository(flags: Flags, file: FileSettings, environ: Mapping[str, str], problems: list[Problem]) -> str:
    url = flags.repository or file.repository
    key = flag_key("repository") if flags.repository else "repository"
    if not url:
        problems.append(
            Problem(
                key,
                None,
                "no repository: set --repository, CARETAKER_REPOSITORY or `repository:` in the config file",
            )
        )
        return ""
    problems.extend(
        dataclasses.replace(p, key=key) if p.key == "repository" else p
        for p in repository_problems(url, environ)
    )
    return url


def _listen(flags: Flags, file: FileSettings, problems: list[Problem]) -> Listen:
    text = flags.listen or file.listen or DEFAULT_LISTEN
    try:
        return parse_listen(text)
    except ValueError as error:
        problems.append(Problem(flag_key("listen") if flags.listen else "listen", text, str(error)))
        return parse_listen(DEFAULT_LISTEN)


def _refuse_job_flags(flags: Flags, problems: list[Problem]) -> None:
    given = {
        "schedule": flags.schedule,
        "prune-schedule": flags.prune_schedule,
        "verify-schedule": flags.verify_schedule,
        "keep-within": flags.keep_within,
        "exclude": flags.excludes or None,
        "run-on-start": flags.run_on_start,
        "skip-unchanged": flags.skip_unchanged,
        **{f"keep-{rule}": count for rule, count in flags.keep.items()},
    }
    for option, value in given.items():
        if value is not None:
            problems.append(
                Problem(flag_key(option), value, "only without --config; describe jobs in the config file")
            )


def env_jobs(flags: Flags, problems: list[Problem]) -> tuple[JobConfig, ...]:
    """The jobs of environment-only mode: a backup, then prune and verify when asked."""
    backup_schedule = _env_schedule("schedule", flags.schedule, problems)
    if flags.schedule is None:
        problems.append(
            Problem(
                flag_key("schedule"),
                None,
                "required without --config: the "
                "backup schedule, e.g. '@hourly', '*/15 * * * *' or '@every 30m'",
            )
        )
    counts = {rule: _flag(f"keep-{rule}", text, values.count, problems) for rule, text in flags.keep.items()}
    within = _duration("keep-within", flags.keep_within, problems)
    policy = RetentionPolicy(**{rule: n for rule, n in counts.items() if n is not None}, within=within)
    if counts and None not in counts.values() and policy.keeps_everything:
        message = f"0 turns the rule off, and no other rule is set: {NO_RULE}"
        problems.extend(Problem(flag_key(f"keep-{rule}"), flags.keep[rule], message) for rule in counts)
    jobs: list[JobConfig] = []
    prune_schedule = _env_schedule("prune-schedule", flags.prune_schedule, problems)
    if not policy.keeps_everything:
        # Without its own schedule, prune runs after every successful backup.
        jobs.append(
            JobConfig(name="prune", kind="prune", action=PruneAction(policy=policy), schedule=prune_schedule)
        )
    elif flags.prune_schedule is not None:
        problems.append(
            Problem(
                flag_key("prune-schedule"),
                flags.prune_schedule,
                "needs a retention rule: set one of the --keep-* flags",
            )
        )
    chain = ("prune",) if jobs and prune_schedule is None else ()
    backup = JobConfig(
        name="backup",
        kind="backup",
        action=BackupAction(excludes=flags.excludes, skip_unchanged=bool(flags.skip_unchanged)),
        schedule=backup_schedule,
        run_on_start=bool(flags.run_on_start),
        then=chain,
    )
    verify_schedule = _env_schedule("verify-schedule", flags.verify_schedule, problems)
    if verify_schedule is not None:
        jobs.append(JobConfig(name="verify", kind="verify", action=VerifyAction(), schedule=verify_schedule))
    return (backup, *jobs) if backup_schedule is not None else ()


def _env_schedule(option: str, text: str | None, problems: list[Problem]) -> Schedule | None:
    if text is None:
        return None
    try:
        return parse_schedule(text, timezone=Defaults().timezone)
    except ValueError as error:
        problems.append(Problem(flag_key(option), text, str(error)))
        return None
