"""Give large freed blocks back to the operating system (issue 14 item 7).

glibc serves blocks of 128 KiB and more with mmap and unmaps them on free — but after the first such free
it raises that threshold (up to 32 MiB) to the size just freed, so the next request body of 19 MiB comes
from the heap, where it stays after it is freed: ten concurrent 19 MiB bodies left a worker 451 MB larger
for good. Fixing the threshold turns the dynamic rule off; every large body then goes back when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("gateway.memory")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024   # blocks from this size on are mapped on their own and unmapped on free


def return_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False where there is no glibc (nothing to do)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD))
    if not ok:
        log.warning("mallopt refused the memory thresholds; large freed blocks may stay with the process")
    return ok
