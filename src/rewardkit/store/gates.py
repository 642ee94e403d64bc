"""Metric gates: conditions a commit's stored metrics must meet before an alias points to it.

A gate is ``<metric><op><number>``, e.g. ``test/accuracy>=0.60`` or ``validation/ece<0.1``;
``op`` is one of ``>=``, ``<=``, ``>``, ``<``, ``==``, ``!=``. The idea is MLflow's model
registry aliases (``production``, ``staging``) with a promotion check in front of them.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rewardkit.errors import StoreError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_GATE_RE = re.compile(r"^\s*(?P<metric>[^<>=!\s][^<>=!]*?)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>\S+)\s*$")


@dataclass(frozen=True)
class Gate:
    """One condition on a stored metric.

    Attributes:
        metric: Metric key as stored in a commit, e.g. ``test/accuracy``.
        op: Comparison, e.g. ``>=``.
        value: The finite threshold.
    """

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Gate:
        """Parse ``test/accuracy>=0.60``.

        Raises:
            StoreError: If ``text`` is not ``<metric><op><finite number>``.
        """
        match = _GATE_RE.match(text)
        value = _number(match.group("value")) if match else None
        if match is None or value is None:
            raise StoreError(
                f"invalid gate {text!r}: expected <metric><op><number> with op one of "
                f"{', '.join(_OPS)}, e.g. 'test/accuracy>=0.60'"
            )
        return cls(match.group("metric"), match.group("op"), value)

    def check(self, metrics: Mapping[str, Any]) -> str | None:
        """Return None if ``metrics`` pass this gate, else why not (naming the metric and its value)."""
        if self.metric not in metrics:
            known = ", ".join(sorted(metrics)[:12]) or "none"
            return f"{self.metric} is not among the commit's metrics (it has: {known})"
        got = metrics[self.metric]
        if isinstance(got, bool) or not isinstance(got, int | float) or not math.isfinite(got):
            return f"{self.metric} is {got!r}, not a finite number"
        if not _OPS[self.op](float(got), self.value):
            return f"{self.metric} is {got:.6g}, the gate needs {self.op} {self.value:g}"
        return None

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def check_gates(gates: Sequence[str], metrics: Mapping[str, Any], what: str) -> list[Gate]:
    """Parse ``gates`` and check them all on ``metrics``; return them parsed.

    Raises:
        StoreError: If a gate is malformed, or any fails; the message lists every failure.
    """
    parsed = [Gate.parse(g) for g in gates]
    failures = [why for gate in parsed if (why := gate.check(metrics)) is not None]
    if failures:
        raise StoreError(f"{what} refused: " + "; ".join(failures))
    return parsed


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
