"""Resident memory of this process, read from /proc (Linux), to check that hostile inputs allocate nothing large."""

import os
import threading
import time

STATUS = "/proc/self/status"
MB = 1 << 20


def available():
    return os.path.exists(STATUS)


def _status_kb(field):
    with open(STATUS) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mb():
    """Current resident set size in MiB."""
    return _status_kb("VmRSS") * 1024 / MB


def _reset_peak():
    """Resets the kernel's peak-RSS counter (VmHWM) to the current RSS; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_growth_mb(fn):
    """Runs `fn()` and returns (its result or exception, how far resident memory rose above where it started, MiB).

    Uses the kernel's peak counter when it can be reset (exact, catches allocations of any duration), else samples
    the RSS every millisecond from a thread.
    """
    start = rss_mb()
    if _reset_peak():
        outcome = _call(fn)
        return outcome, _status_kb("VmHWM") * 1024 / MB - start
    peak, done = [start], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome = _call(fn)
    finally:
        done.set()
        sampler.join()
    return outcome, max(peak[0], rss_mb()) - start


def _call(fn):
    try:
        return fn()
    except Exception as error:  # the caller inspects it
        return error
