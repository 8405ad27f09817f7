"""Optional glibc allocator tuning for phantom-rendering processes (benchmarks, DataLoader workers).

Rendering allocates many short-lived arrays of a few hundred kB. With glibc's defaults each is a
fresh mmap whose pages fault in on first touch, which costs ~20-30% of the render time. Keeping
such blocks on the heap avoids that. This is process-wide, so it is never done on import: call it
explicitly (e.g. in a worker_init_fn) where a process mostly renders phantoms.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_allocator_for_rendering(mmap_threshold_bytes: int = 64 << 20) -> bool:
    """Raise glibc's mmap/trim thresholds; returns False (doing nothing) off glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_bytes)) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, int(4 * mmap_threshold_bytes)) == 1
    ok &= mallopt(_M_TOP_PAD, int(mmap_threshold_bytes)) == 1
    return bool(ok)
