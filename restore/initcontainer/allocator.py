"""Tuning glibc's allocator for a short-lived process that moves large buffers."""

from __future__ import annotations

import ctypes
from collections.abc import Mapping

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory(environ: Mapping[str, str]) -> None:
    """Let freed buffers be reused instead of returned to the kernel and faulted in again.

    A restore allocates and frees 16 MiB packs and 1 MiB chunks on several threads; with
    glibc's defaults many of them are fresh mappings whose every page faults on first touch
    (about 100,000 faults and 0.3-0.5 s of system time per GiB restored). Only for a process
    that exits when done, since the memory kept is not handed back. The user's own
    MALLOC_* settings win; elsewhere than glibc this does nothing.
    """
    if any(name in environ for name in _USER_SETTINGS):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        mallopt(_M_TRIM_THRESHOLD, 128 << 20)
