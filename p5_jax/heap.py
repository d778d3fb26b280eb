"""Handing memory back to the system, so that resident memory shows what an evaluation holds
rather than what it once held: freed heap blocks (glibc only; elsewhere a no-op) and compiled
XLA programs no longer needed."""
import ctypes
import gc

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameter numbers


def return_freed_memory_promptly() -> None:
    """Has glibc give freed memory back to the system at once, process-wide (elsewhere a no-op):
    blocks of 64 KiB or more are mapped on their own and unmapped when freed.

    By default glibc keeps freed blocks for reuse, so each compiled program and batch of an
    evaluation raised its resident memory a little for good: prompt 2-3 on 200 users peaked
    140 MB above its run on 20 users, 82 MB with this."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_TRIM_THRESHOLD, 0)
        libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024)


def release_memory() -> None:
    """Returns freed heap memory to the system (glibc only; elsewhere a no-op).

    The model calls' freed buffers stay in glibc's per-thread heaps and still count as
    resident, so without this one task's transient peak raises the base of the next."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def drop_compiled_programs() -> None:
    """Forgets every compiled XLA program (the next call of a jitted function compiles again).

    Each input length an evaluation task meets compiles its own beam program, tens of MB on
    the CPU, and jit keeps them all: without this, the programs of every earlier task stay
    resident for the rest of the run."""
    import jax  # here, so that the malloc helpers above need no jax

    jax.clear_caches()


def _glibc():
    """glibc, or None on a system without it (or one without mallopt and malloc_trim)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
