"""What this machine is: its memory and which CPU it is (Linux's /proc; None elsewhere).

The engine refuses contexts that cannot fit in memory, calibrations are kept
per CPU, and a benchmark's header says which CPU made it. "AMD EPYC" names
two generations whose verify costs differ, so the CPU's identity includes
its family, model and stepping.
"""

from __future__ import annotations

import functools
import platform


def _fields(path: str) -> dict[str, str]:
    """The first value of each "key : value" line of a /proc file."""
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                name, sep, value = line.partition(":")
                if sep:
                    out.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    return out


def memory_info(meminfo: str = "/proc/meminfo") -> dict[str, int] | None:
    """MemTotal and MemAvailable in bytes."""
    fields = _fields(meminfo)
    try:
        return {k: int(fields[k].split()[0]) * 1024 for k in ("MemTotal", "MemAvailable")}
    except (KeyError, ValueError, IndexError):
        return None


@functools.cache  # the CPU does not change under a process; each calibration key asks
def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name with its family, model and stepping where Linux gives them."""
    fields = _fields(cpuinfo)
    name = fields.get("model name") or platform.processor() or platform.machine()
    keys = (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))
    numbers = [(label, fields.get(key)) for label, key in keys]
    if all(value for _, value in numbers):
        name += " (" + ", ".join(f"{label} {value}" for label, value in numbers) + ")"
    return name
