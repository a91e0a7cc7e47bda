"""What encryption costs: caretaker encrypted vs unencrypted vs restic (which always encrypts),
on a local directory and on S3 (SeaweedFS), in one run.

Usage: .venv/bin/python bench/encryption.py [--reps 3] [--only files|big] [--store local|s3]
                                            [--latency-ms 20]
Needs restic and GNU time (run scripts/bench-setup once).

For each store, data set (2,000 mixed files of ~200 MB; one 1 GiB file, half random) and
repetition, the three tools get fresh repositories and run interleaved, each first in turn:
full backup, incremental backup after changing 1% of the files (2.1 s later, out of the
"racy" window), restore of the latest state into an empty folder. Then each opens its
repository once more doing nothing else (`caretaker snapshots`, `restic snapshots`): the
fixed cost of a process opening an encrypted repository, the password's key derivation
(caretaker: Argon2id, 64 MiB, 3 passes; restic: scrypt), which the sidecar pays once and a
command pays every time.
Last, the two caretakers' incremental backups as the sidecar takes them ("in the sidecar"):
a `caretaker sidecar` per repository, started and backed up once (its key derived), then
1% of the files changed and a backup triggered (SIGUSR1) in each; its time is the job's own
(`job.success`), its CPU the sidecar process's meanwhile (restic has no such mode).
Every step starts with nothing dirty in the page cache (`sync` first: caretaker's restore
syncs the whole filesystem, and would otherwise write back what the step before it left).
caretaker syncs before it reports a restore complete and restic does not, so restic's
restore is also shown with a `sync -f` of the restored folder ("restic + sync").
With `--latency-ms`, every tool reaches the S3 server through a proxy that adds that round
trip to each request (bench/latency.py), as a real object store's 10-50 ms would.
Printed: one table (median and minimum wall time, client CPU, server CPU, peak RSS; ratios
of minima of encrypted caretaker to unencrypted caretaker, to restic and to restic + sync)
and a closing note with the issue's targets.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import (
    ROOT,
    TIME,
    Row,
    Sample,
    age_tree_mtimes,
    big_file,
    caretaker,
    change_files,
    cpu_seconds,
    fresh,
    listing,
    mixed_files,
    ratio_table,
    restic_repository,
    run_benchmark,
    runtime_venv,
    synced,
    timed,
    workdir,
)
from latency import LatencyProxy

sys.path.insert(0, str(ROOT))
from tests.support.keys import UNENCRYPTED_ENV
from tests.support.seaweed import SeaweedServer
from tests.support.sidecar import Sidecar, wait_until

ENCRYPTED, PLAIN, RESTIC = "caretaker (encrypted)", "caretaker (unencrypted)", "restic"
RESTIC_SYNCED = "restic + sync"
TOOLS = (ENCRYPTED, PLAIN, RESTIC)
NAMES = {ENCRYPTED: "enc", PLAIN: "plain", RESTIC: "restic"}
PHASES = ("full backup", "incremental (1% changed)", "restore", "open only")
IN_THE_SIDECAR = "incremental (1% changed), in the sidecar"
PASSWORD = "benchmark password"


@dataclasses.dataclass
class Store:
    """Where one repetition's three repositories live: local folders or buckets of one server."""

    base: Path
    server: SeaweedServer | None = None
    rep: int = 0
    endpoint: str = ""  # where the tools reach the server: itself, or a LatencyProxy before it

    def bucket(self, tool: str) -> str:
        return f"{NAMES[tool]}-{self.rep}"

    def url(self, tool: str) -> str:
        if self.server is None:
            local = self.base / NAMES[tool]
            return str(local) if tool == RESTIC else f"file://{local}"
        prefix = f"s3:{self.endpoint}/" if tool == RESTIC else "s3://"
        return f"{prefix}{self.bucket(tool)}/repo"

    def prepare(self) -> None:
        if self.server is not None:
            for tool in TOOLS:
                self.server.make_bucket(self.bucket(tool))

    def drop(self) -> None:
        if self.server is None:
            shutil.rmtree(self.base, ignore_errors=True)
            return
        client = self.server.client()
        for tool in TOOLS:
            client.delete_bucket(Bucket=self.bucket(tool))  # SeaweedFS drops the objects too


class Tools:
    """The command lines of the three tools for one repetition."""

    def __init__(self, tool: str, store: Store, data: Path, base: Path) -> None:
        self.tool, self.store, self.data, self.base = tool, store, data, base
        self.out = base / "out"
        (base / "password").write_text(PASSWORD + "\n")
        self.server_env = (
            {**store.server.env(), "CARETAKER_S3_ENDPOINT": store.endpoint} if store.server else {}
        )
        self.env = restic_repository(store.url(RESTIC), PASSWORD, base, self.server_env)

    def _caretaker(self, tool: str, verb: str, extra: str = "") -> str:
        key = f"--password-file {self.base / 'password'}" if tool == ENCRYPTED else "--insecure-no-encryption"
        return f"{self.tool} {verb} --repository {self.store.url(tool)} {key} --log-level warning {extra}"

    def command(self, tool: str, phase: str) -> str:
        if tool == RESTIC:
            return {
                "restore": f"restic restore latest -q --target {self.out}",
                "open only": "restic snapshots -q > /dev/null",
            }.get(phase, f"restic backup -q {self.data}")
        return {
            "restore": self._caretaker(
                tool, "restore", f"--path {self.out} --termination-log {self.base / 'term'}"
            ),
            "open only": self._caretaker(tool, "snapshots", "--json > /dev/null"),
        }.get(phase, self._caretaker(tool, "backup", f"--path {self.data}"))

    def sidecar(self, tool: str) -> Sidecar:
        """`caretaker sidecar` on the tool's repository, backing up only when triggered."""
        key = (
            {"CARETAKER_PASSWORD_FILE": str(self.base / "password")} if tool == ENCRYPTED else UNENCRYPTED_ENV
        )
        sidecar = Sidecar(
            fresh(self.base / f"sidecar-{NAMES[tool]}"),
            ["--repository", self.store.url(tool), "--path", str(self.data), "--schedule", "@yearly"],
            env={**self.server_env, **key},
        )
        sidecar.command = [self.tool, "sidecar"]  # the runtime venv's, as the commands above
        return sidecar

    def restored(self, tool: str) -> Path:
        # restic restores the absolute source path below --target.
        return self.out / str(self.data).lstrip("/") if tool == RESTIC else self.out


def rotated(tools: Sequence[str], rep: int) -> list[str]:
    """The tools in the order of repetition `rep`: each goes first in turn. On a virtual
    machine that hands freed memory back to its host, the first step to write a GiB after
    a pause pays for the host's new pages (up to 2.5 s per GiB, seen here); whoever always
    went first would always pay."""
    shift = rep % len(tools)
    return [*tools[shift:], *tools[:shift]]


def one_rep(tools: Tools, data: Path, rep: int, report: Callable[[str, str, Sample], None]) -> None:
    server_pid = tools.store.server.pid if tools.store.server else None
    for phase in PHASES:
        if phase.startswith("incremental"):
            change_files(data, 0.01, 100 + rep)
            time.sleep(2.1)
        for tool in rotated(TOOLS, rep):
            fresh(tools.out)
            os.sync()  # what the previous step left unwritten is not charged to this one
            sample = timed(tools.command(tool, phase), tools.env, server_pid=server_pid)
            report(phase, tool, sample)
            if phase == "restore" and tool == RESTIC:
                report(phase, RESTIC_SYNCED, synced(sample, tools.out))
            if phase == "restore" and listing(tools.restored(tool)) != listing(data):
                sys.exit(f"{tool} restored something else than {data}")
    in_the_sidecar(tools, data, rep, report)


def in_the_sidecar(tools: Tools, data: Path, rep: int, report: Callable[[str, str, Sample], None]) -> None:
    server_pid = tools.store.server.pid if tools.store.server else None
    with contextlib.ExitStack() as stack:
        sidecars = {tool: stack.enter_context(tools.sidecar(tool)) for tool in (ENCRYPTED, PLAIN)}
        for sidecar in sidecars.values():
            backed_up(sidecar)  # its key derived, as in a sidecar that has run for a while
        change_files(data, 0.01, 200 + rep)
        time.sleep(2.1)
        for tool in rotated((ENCRYPTED, PLAIN), rep):
            os.sync()
            report(IN_THE_SIDECAR, tool, backed_up(sidecars[tool], server_pid))


def backed_up(sidecar: Sidecar, server_pid: int | None = None) -> Sample:
    """Trigger the sidecar's backup; its duration, and the sidecar's CPU time, peak RSS and
    the server's CPU time meanwhile."""

    def ended() -> list[dict[str, object]]:
        sidecar.alive_or_fail()
        return [
            e for e in sidecar.logs() if str(e.get("event")).startswith("job.") and "duration_seconds" in e
        ]

    # The peak from here: the process's own would be its start's (the key derivation's 64
    # MiB for the encrypted one), which the sidecar pays once.
    Path(f"/proc/{sidecar.pid}/clear_refs").write_text("5")
    before, cpu, server = len(ended()), cpu_seconds(sidecar.pid), cpu_seconds(server_pid)
    sidecar.signal(signal.SIGUSR1)
    wait_until(lambda: len(ended()) > before, 600, "the triggered backup", interval=0.2)
    job = ended()[-1]
    if job["event"] != "job.success":
        sys.exit(f"the sidecar's backup failed: {job}")
    return Sample(
        float(str(job["duration_seconds"])),
        cpu_seconds(sidecar.pid) - cpu,
        peak_rss_mib(sidecar.pid),
        cpu_seconds(server_pid) - server,
    )


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def bench(
    label: str, data: Path, reps: int, tool: str, *, server: SeaweedServer | None = None, endpoint: str = ""
) -> list[Row]:
    names = {phase: [*TOOLS, RESTIC_SYNCED] if phase == "restore" else TOOLS for phase in PHASES}
    names[IN_THE_SIDECAR] = (ENCRYPTED, PLAIN)
    samples: dict[tuple[str, str], list[Sample]] = {(p, t): [] for p, tools in names.items() for t in tools}

    def report(phase: str, name: str, sample: Sample) -> None:
        samples[phase, name].append(sample)
        print(
            f"  {label} rep {rep} {phase:<26} {name:<24} {sample.wall:6.2f} s cpu {sample.cpu:6.2f} s "
            f"server {sample.server_cpu:6.2f} s {sample.rss_mib:5.0f} MiB",
            flush=True,
        )

    base = workdir() / "encryption"
    for rep in range(reps):
        store = Store(fresh(base / "repos"), server, rep, endpoint)
        store.prepare()
        one_rep(Tools(tool, store, data, fresh(base / "work")), data, rep, report)
        store.drop()
    return [Row(label, phase, name, found) for (phase, name), found in samples.items()]


def closing_note(rows: list[Row]) -> str:
    def best(data: str, phase: str, tool: str) -> float:
        return next(r for r in rows if (r.data, r.operation, r.tool) == (data, phase, tool)).minimum("wall")

    lines = ["", "Targets (ratios of minimum wall times): encrypted <= 1.10x unencrypted, and < 1x restic."]
    for data in dict.fromkeys(r.data for r in rows):
        unlock = best(data, "open only", ENCRYPTED) - best(data, "open only", PLAIN)
        lines.append(f"- {data}: opening the encrypted repository costs {unlock:.2f} s more per process")
        for phase in PHASES[:3]:
            enc, plain, restic = (best(data, phase, t) for t in TOOLS)
            data_path = (enc - unlock) / plain
            peer = f"{enc / restic:.2f}x restic"
            if phase == "restore":
                peer += f", {enc / best(data, phase, RESTIC_SYNCED):.2f}x restic + sync"
            lines.append(
                f"  - {phase}: {enc / plain:.2f}x unencrypted ({data_path:.2f}x without the per-process "
                f"key derivation), {peer}"
            )
        enc, plain = (best(data, IN_THE_SIDECAR, t) for t in (ENCRYPTED, PLAIN))
        lines.append(f"  - {IN_THE_SIDECAR}: {enc / plain:.2f}x unencrypted")
    return "\n".join(lines)


def bench_s3(name: str, data: Path, reps: int, tool: str, latency_ms: float) -> list[Row]:
    with SeaweedServer(fresh(workdir() / "encryption" / "seaweed"), volume_size_mb=1024) as server:
        if not latency_ms:
            return bench(f"{name}, S3", data, reps, tool, server=server, endpoint=server.endpoint)
        with LatencyProxy(server.endpoint, rtt_ms=latency_ms) as proxy:
            return bench(
                f"{name}, S3 + {latency_ms:g} ms", data, reps, tool, server=server, endpoint=proxy.endpoint
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("files", "big"))
    parser.add_argument("--store", choices=("local", "s3"))
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="round-trip time added before the S3 server (0: none)"
    )
    args = parser.parse_args()
    missing = [name for name in ("restic",) if shutil.which(name) is None]
    if missing or not Path(TIME).exists():
        sys.exit(f"missing: {', '.join(missing) or TIME}; run scripts/bench-setup first")
    tool = caretaker(runtime_venv())
    datasets = {"files": ("2,000 files", mixed_files), "big": ("1 GiB file", big_file)}
    chosen = {key: value for key, value in datasets.items() if args.only in (None, key)}
    rows: list[Row] = []
    for key, (name, make) in chosen.items():
        data = make(workdir() / "data" / key)
        age_tree_mtimes(data)
        if args.store in (None, "local"):
            rows += bench(f"{name}, local", data, args.reps, tool)
        if args.store in (None, "s3"):
            rows += bench_s3(name, data, args.reps, tool, args.latency_ms)
    print()
    print(ratio_table(rows, subject=ENCRYPTED, baselines=(PLAIN, RESTIC, RESTIC_SYNCED)))
    print(closing_note(rows))


if __name__ == "__main__":
    run_benchmark(main, scratch="encryption")
