"""CPU runtime settings that make PyTorch training and inference usable on small VMs."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1   # glibc mallopt parameter ids (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum: below it, blocks come from the reusable heap
TRIM_THRESHOLD = 1 << 30   # keep up to 1 GiB of freed heap instead of returning it to the OS


def keep_freed_memory() -> bool:
    """Make glibc reuse freed activation buffers instead of unmapping them.

    By default every tensor over ~128 KiB is a fresh mmap that is returned to the OS when freed,
    so each training step page-faults its activations in again. On the VMs tuneproof targets a
    page fault is slow enough that a 135M LoRA step took 77-120 s instead of ~10 s (measured
    side by side). Returns False where it does not apply (not Linux/glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
