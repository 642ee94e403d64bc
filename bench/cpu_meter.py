"""How much CPU other processes took while a timed phase ran: a check for contaminated timings.

Timings on a shared machine are only worth something if nothing else ran. Around each timed
phase we read the machine's busy CPU time from ``/proc/stat`` (only the cores this process may
run on) and this process's own CPU time, children it waited for included (``os.times``). What
the cores were busy with beyond our own work was other processes:

    other share = (busy on our cores - own CPU time) / (wall time * our cores)

0 means the cores were ours alone; 0.5 on 2 cores means one whole core went to something
else. A phase above the threshold (10% by default) is flagged. Linux only; elsewhere the share
is unknown (``None``) and nothing is flagged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_THRESHOLD = 0.10  # other processes' share of our cores above which a phase is flagged
# /proc/stat columns after the cpu name: user nice system idle iowait irq softirq steal guest
# guest_nice (USER_HZ ticks). Busy = all but idle and iowait; guest time is already in user.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


@dataclass(frozen=True)
class CpuSample:
    """One reading: wall clock, busy CPU seconds of our cores, and our own CPU seconds."""

    wall: float
    busy: float | None
    own: float
    cores: int


@dataclass(frozen=True)
class PhaseUsage:
    """CPU use during one phase.

    Attributes:
        wall_seconds: Length of the phase.
        own_cpu_seconds: CPU time of this process and its waited-for children.
        other_cpu_seconds: Busy CPU time of our cores not spent by us (``None`` off Linux).
        cores: Cores this process may run on.
        other_share: ``other_cpu_seconds / (wall_seconds * cores)``, in [0, 1] (``None`` off Linux).
    """

    wall_seconds: float
    own_cpu_seconds: float
    other_cpu_seconds: float | None
    cores: int
    other_share: float | None

    def contaminated(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        """Whether other processes took more than ``threshold`` of our cores."""
        return self.other_share is not None and self.other_share > threshold

    def to_dict(self) -> dict[str, float | int | None]:
        return {"wall_seconds": self.wall_seconds, "own_cpu_seconds": self.own_cpu_seconds,
                "other_cpu_seconds": self.other_cpu_seconds, "cores": self.cores,
                "other_share": self.other_share}


def our_cores() -> list[int]:
    """The CPU numbers this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def busy_seconds(cores: list[int], stat: str | None = None) -> float | None:
    """Busy CPU seconds since boot of the given cores, from ``/proc/stat`` (``None`` if unreadable)."""
    try:
        text = stat if stat is not None else Path("/proc/stat").read_text()
    except OSError:
        return None
    wanted = {f"cpu{n}" for n in cores}
    ticks = 0
    for line in text.splitlines():
        name, *values = line.split()
        if name in wanted:
            ticks += sum(int(values[i]) for i in _BUSY_COLUMNS if i < len(values))
    return ticks / os.sysconf("SC_CLK_TCK")


def sample(cores: list[int] | None = None) -> CpuSample:
    """Read the clocks now."""
    cores = cores if cores is not None else our_cores()
    t = os.times()
    return CpuSample(time.perf_counter(), busy_seconds(cores),
                     t.user + t.system + t.children_user + t.children_system, len(cores))


def usage(before: CpuSample, after: CpuSample) -> PhaseUsage:
    """CPU use between two samples; other processes' time is clamped at 0 (tick rounding)."""
    wall = after.wall - before.wall
    own = after.own - before.own
    if before.busy is None or after.busy is None or wall <= 0:
        return PhaseUsage(wall, own, None, after.cores, None)
    other = max(0.0, after.busy - before.busy - own)
    return PhaseUsage(wall, own, other, after.cores, min(1.0, other / (wall * after.cores)))


class CpuMeter:
    """Context manager measuring one phase: ``with CpuMeter() as m: ...`` then ``m.usage``."""

    def __enter__(self) -> CpuMeter:
        self.usage: PhaseUsage | None = None
        self._before = sample()
        return self

    def __exit__(self, *exc: object) -> None:
        self.usage = usage(self._before, sample())
