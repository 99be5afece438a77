"""Keep freed CPU memory for reuse instead of handing it back to the OS after every large tensor.

glibc's malloc serves every block above its mmap threshold (32 MiB at most) with a fresh ``mmap``
and unmaps it on ``free``. A Transformer's activations are such blocks (a ViT-B batch of 32 makes
dozens of 19–77 MB tensors per pass), so on every forward pass the kernel faults each one in again,
page by page, and zeroes it, which costs a CPU run much of its time in system calls
(docs/BENCHMARKS.md measures it). PyTorch's performance tuning guide
recommends jemalloc or tcmalloc for this reason; one ``mallopt`` call gets the same reuse from the
glibc every Linux machine already has, with no preload and no extra package.

The price: freed memory is not returned to the OS before the process exits, so a process stays at
its peak footprint, and that peak may grow a little from heap fragmentation (measured in
docs/BENCHMARKS.md). The ``pela`` command does this at start-up;
``PELA_KEEP_FREED_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import platform

# from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int)
ENV = "PELA_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve large blocks from its heap and keep what is freed for the next
    ones.

    Returns True when applied, False where it does not apply: a C library other than glibc (macOS,
    Windows, musl), or ``PELA_KEEP_FREED_MEMORY=0`` in the environment. Calling it again is
    harmless. Results are unchanged (only where tensors live changes); the process keeps its peak
    memory until it exits.
    """
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # no mmap for large blocks (they come from the heap, whose pages stay mapped), and never shrink
    # the heap
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM))
