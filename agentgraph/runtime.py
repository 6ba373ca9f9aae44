"""Process settings that make XLA:CPU fast: transparent huge pages for its buffers.

XLA:CPU allocates each execution's temporaries afresh; large allocations come straight from the
kernel, so every first write to them takes a page fault per 4 KiB page — on the MNIST meta-step
over a million faults, a large share of the run time (docs/performance.md). glibc's tunable
``glibc.malloc.hugetlb=1`` makes ``malloc`` ask for transparent huge pages (2 MiB) on those
regions, which cuts the faults ~7× and the meta-step time by about a quarter.

The tunable is read when a process starts, so it has to be in the environment *before* Python
runs. The ``agentgraph`` command restarts itself with it (:func:`reexec_with_hugepages`) unless
``AGENTGRAPH_HUGEPAGES=0``; in your own scripts, start Python with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` or call :func:`reexec_with_hugepages` first thing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from collections.abc import Sequence

__all__ = ["HUGEPAGE_TUNABLE", "hugepages_available", "hugepages_enabled", "reexec_with_hugepages",
           "release_freed_memory"]

HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"
_THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def _linux_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def hugepages_enabled() -> bool:
    """Whether this process was started with glibc's huge-page tunable.

    Example:
        >>> isinstance(hugepages_enabled(), bool)
        True
    """
    return "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", "")


def hugepages_available() -> bool:
    """Linux with glibc and transparent huge pages in ``always`` or ``madvise`` mode.

    Example:
        >>> isinstance(hugepages_available(), bool)
        True
    """
    if not _linux_glibc():
        return False
    try:
        with open(_THP) as f:
            mode = f.read()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def reexec_with_hugepages(argv: Sequence[str] | None = None) -> None:
    """Restart the current Python process with :data:`HUGEPAGE_TUNABLE` added to
    ``GLIBC_TUNABLES`` (same interpreter, same arguments). Returns without doing anything when
    it is already set, when huge pages are not available, or when ``AGENTGRAPH_HUGEPAGES=0``.

    Call it before any work (it replaces the process): the ``agentgraph`` command does.

    Example:
        >>> import os
        >>> os.environ["AGENTGRAPH_HUGEPAGES"] = "0"
        >>> reexec_with_hugepages()  # disabled: returns
        >>> del os.environ["AGENTGRAPH_HUGEPAGES"]
    """
    if os.environ.get("AGENTGRAPH_HUGEPAGES", "1") == "0" or hugepages_enabled() or not hugepages_available():
        return
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(t for t in (env.get("GLIBC_TUNABLES"), HUGEPAGE_TUNABLE) if t)
    args = list(sys.argv if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *args], env)


def release_freed_memory() -> bool:
    """Hand memory that ``malloc`` holds but no longer uses back to the operating system
    (glibc's ``malloc_trim``). Compiling a big XLA program leaves hundreds of MiB of freed
    compiler memory in the process (0.7 GiB for the MNIST meta-step); calling this between
    compiling and running keeps that out of the run's peak. Returns whether anything could be
    called (``False`` off glibc).

    Example:
        >>> isinstance(release_freed_memory(), bool)
        True
    """
    if not _linux_glibc():
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True
