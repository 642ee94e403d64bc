"""The contamination check: other processes' share of our cores during a timed phase."""

import os
import subprocess
import sys
import time

import pytest
from cpu_meter import CpuMeter, CpuSample, busy_seconds, usage

TICK = os.sysconf("SC_CLK_TCK")
# user nice system idle iowait irq softirq steal guest guest_nice
STAT = (
    "cpu  900 900 900 900 900 900 900 900 0 0\n"
    "cpu0 100 10 20 5000 700 3 4 5 0 0\n"
    "cpu1 200 20 40 6000 800 6 8 10 0 0\n"
    "intr 12345 0 0\n"
)


def test_busy_seconds_counts_only_our_cores_and_not_idle_or_iowait():
    assert busy_seconds([0], STAT) == pytest.approx((100 + 10 + 20 + 3 + 4 + 5) / TICK)
    assert busy_seconds([0, 1], STAT) == pytest.approx((142 + 284) / TICK)
    assert busy_seconds([1], STAT) == pytest.approx(284 / TICK)


def test_other_share_is_busy_time_not_ours_over_wall_time_and_cores():
    before = CpuSample(wall=100.0, busy=50.0, own=3.0, cores=2)
    after = CpuSample(wall=110.0, busy=62.0, own=11.0, cores=2)  # 12 s busy, 8 s of it ours
    phase = usage(before, after)
    assert phase.wall_seconds == pytest.approx(10.0)
    assert phase.own_cpu_seconds == pytest.approx(8.0)
    assert phase.other_cpu_seconds == pytest.approx(4.0)
    assert phase.other_share == pytest.approx(0.2)
    assert phase.contaminated(0.1) and not phase.contaminated(0.25)


def test_tick_rounding_never_gives_a_negative_share():
    phase = usage(CpuSample(0.0, 10.0, 0.0, 2), CpuSample(1.0, 11.0, 1.02, 2))
    assert phase.other_cpu_seconds == 0.0 and phase.other_share == 0.0


def test_without_proc_stat_the_share_is_unknown_and_nothing_is_flagged():
    phase = usage(CpuSample(0.0, None, 0.0, 2), CpuSample(1.0, None, 0.5, 2))
    assert phase.other_share is None and not phase.contaminated(0.0)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_a_busy_process_beside_us_shows_up_as_other():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it start
        with CpuMeter() as meter:
            time.sleep(1.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert meter.usage.own_cpu_seconds < 0.3
    assert meter.usage.other_cpu_seconds >= 0.3
    assert meter.usage.contaminated(0.05)


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_our_own_work_counts_as_ours():
    with CpuMeter() as meter:
        end = time.process_time() + 0.4
        while time.process_time() < end:
            pass
    assert meter.usage.own_cpu_seconds >= 0.35
