"""Footprint of an idle sidecar: RSS and CPU of `caretaker sidecar` with three jobs (backup,
prune, verify) whose schedules do not fire during the measurement, averaged over a minute.

Between two backups the sidecar should cost nothing: targets are RSS < 80 MB and CPU < 1%
of one core. The process is probed the way a cluster would: /metrics every 15 s
(Prometheus) and /readyz every 10 s (kubelet), so the readiness check's repository listing
is part of the cost. It runs from a runtime-only virtualenv (what the image ships).

    python bench/sidecar_idle.py [--seconds 60] [--s3]

--s3 starts a SeaweedFS server (from the dev venv) and uses an S3 repository, which loads
boto3. Prints one JSON object; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from harness import ROOT, caretaker, fresh, run_benchmark, runtime_venv, workdir

RSS_TARGET_MB = 80.0
CPU_TARGET_PERCENT = 1.0
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def config(url: str, data: Path) -> str:
    return f"""
repository: {url}
path: {data}
jobs:
  - {{name: backup, kind: backup, schedule: "0 3 * * *", then: [prune]}}
  - {{name: prune, kind: prune, keep: {{daily: 7, weekly: 4}}}}
  - {{name: verify, kind: verify, schedule: "0 4 * * 0", read_data: 0.05}}
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident * PAGE / 1e6


def fetch(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            response.read()
            return int(response.status)
    except OSError:
        return 0


@contextlib.contextmanager
def repository(use_s3: bool, base: Path) -> Iterator[tuple[str, dict[str, str]]]:
    if not use_s3:
        yield f"file://{fresh(base / 'repo')}", {}
        return
    sys.path.insert(0, str(ROOT))
    from tests.support.seaweed import SeaweedServer

    with SeaweedServer(fresh(base / "seaweed")) as server:
        server.make_bucket("idle")
        yield "s3://idle/repo", server.env()


def measure(seconds: int, use_s3: bool) -> dict[str, object]:
    base = workdir() / "sidecar-idle"
    data = fresh(base / "data")
    for index in range(100):
        (data / f"file{index}.txt").write_text(f"row {index}\n" * 100)
    port = 19_000 + os.getpid() % 1000
    with repository(use_s3, base) as (url, env):
        (base / "config.yaml").write_text(config(url, data))
        subprocess.run(
            [
                caretaker(runtime_venv()),
                "backup",
                "--repository",
                url,
                "--insecure-no-encryption",
                "--path",
                str(data),
            ],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
        process = subprocess.Popen(
            [
                caretaker(runtime_venv()),
                "sidecar",
                "--config",
                str(base / "config.yaml"),
                "--listen",
                f"127.0.0.1:{port}",
            ],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return sample(process.pid, port, seconds)
        finally:
            process.terminate()
            process.wait(30)


def sample(pid: int, port: int, seconds: int) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while fetch(port, "/healthz") != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the sidecar did not come up")
        time.sleep(0.2)
    fetch(port, "/readyz")
    fetch(port, "/metrics")
    time.sleep(2)  # settle after start-up
    cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
    rss: list[float] = []
    ready: list[int] = []
    for second in range(seconds):
        if second % 15 == 0:
            fetch(port, "/metrics")
        if second % 10 == 0:
            ready.append(fetch(port, "/readyz"))
        rss.append(rss_mb(pid))
        time.sleep(1)
    cpu = cpu_seconds(pid) - cpu_start
    wall = time.monotonic() - wall_start
    return {
        "seconds": round(wall, 1),
        "rss_mb_mean": round(sum(rss) / len(rss), 1),
        "rss_mb_max": round(max(rss), 1),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 3),
        "readyz_ok": all(code == 200 for code in ready),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--s3", action="store_true", help="use an S3 repository (SeaweedFS)")
    args = parser.parse_args()
    result = measure(args.seconds, args.s3)
    result.update(
        repository="s3" if args.s3 else "local",
        rss_target_mb=RSS_TARGET_MB,
        cpu_target_percent=CPU_TARGET_PERCENT,
    )
    print(json.dumps(result))
    met = (
        result["rss_mb_mean"] < RSS_TARGET_MB  # type: ignore[operator]
        and result["cpu_percent_of_one_core"] < CPU_TARGET_PERCENT  # type: ignore[operator]
        and result["readyz_ok"]
    )
    return 0 if met else 1


if __name__ == "__main__":
    run_benchmark(main, scratch="sidecar-idle")
