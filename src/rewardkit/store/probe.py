"""The probe set of a commit: fixed held-out pairs and the model's rewards on them.

``train --commit`` stores up to :data:`PROBE_MAX` held-out pairs as a blob (canonical JSON
list of ``{"prompt", "chosen", "rejected"}``) and the model's rewards on them as an
``F32 [n, 2]`` tensor object (columns: chosen, rejected), and records
``params["probe"] = {"pairs": <blob id>, "rewards": <tensor id>, "n": n}``. Two commits
trained on the same data and split have the same pairs blob, so their behaviour compares
without scoring anything again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from rewardkit.errors import StoreError
from rewardkit.store.objects import blob_id, canonical_json, dtype_name, tensor_bytes, tensor_id

if TYPE_CHECKING:
    from rewardkit.store.commits import Commit
    from rewardkit.store.objects import ObjectStore

#: Most pairs a probe set holds.
PROBE_MAX = 256
PARAM = "probe"


@dataclass(frozen=True)
class Probe:
    """A probe set with one model's rewards on it.

    Attributes:
        pairs: ``n`` pairs as ``{"prompt", "chosen", "rejected"}`` dicts, in split order.
        rewards: ``(n, 2)`` float32 rewards, columns chosen and rejected.
    """

    pairs: list[dict[str, str]]
    rewards: torch.Tensor

    def __post_init__(self) -> None:
        if tuple(self.rewards.shape) != (len(self.pairs), 2) or not self.pairs:
            raise StoreError(f"a probe needs n > 0 pairs and (n, 2) rewards, got {len(self.pairs)} pairs "
                             f"and rewards of shape {tuple(self.rewards.shape)}")

    def pairs_bytes(self) -> bytes:
        """The canonical JSON of the pairs: the bytes of the pairs blob."""
        return canonical_json(self.pairs)

    def param(self) -> dict[str, Any]:
        """The ``params["probe"]`` entry naming this probe's objects (ids computed, nothing written)."""
        rewards = self.rewards.to(torch.float32).contiguous()
        return {"pairs": blob_id(self.pairs_bytes()),
                "rewards": tensor_id(dtype_name(rewards.dtype), rewards.shape, tensor_bytes(rewards)),
                "n": len(self.pairs)}

    @property
    def lengths(self) -> torch.Tensor:
        """``(n, 2)`` int64 lengths of the chosen and rejected responses in characters."""
        return torch.tensor([[len(p["chosen"]), len(p["rejected"])] for p in self.pairs], dtype=torch.int64)


def make_probe(pairs: Sequence[Any], reward_of: Mapping[tuple[str, str], float]) -> Probe:
    """A probe of the first :data:`PROBE_MAX` of ``pairs``, with their rewards looked up.

    Args:
        pairs: Held-out preference pairs (objects with ``prompt``, ``chosen``, ``rejected``),
            in split order.
        reward_of: ``(prompt, response) -> reward``, as
            :func:`rewardkit.evaluation.reward_table` returns it for those pairs.
    """
    kept = list(pairs)[:PROBE_MAX]
    return Probe(pairs=[{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in kept],
                 rewards=torch.tensor([[reward_of[(p.prompt, p.chosen)], reward_of[(p.prompt, p.rejected)]]
                                       for p in kept], dtype=torch.float32).reshape(len(kept), 2))


def probe_param(commit: Commit) -> dict[str, Any] | None:
    """The ``params["probe"]`` entry of a commit, or None if it has none."""
    value = (commit.params or {}).get(PARAM)
    return value if isinstance(value, dict) else None


def load_probe(objects: ObjectStore, commit: Commit) -> Probe | None:
    """The probe stored with ``commit`` (both objects re-hashed), or None if it has none.

    Raises:
        StoreError: If a probe object is missing, corrupt or not what the params say.
    """
    param = probe_param(commit)
    if param is None:
        return None
    try:
        pairs = json.loads(objects.get_bytes(param["pairs"], verify=True))
        rewards = objects.get_tensor(param["rewards"], verify=True)
        probe = Probe(pairs=pairs, rewards=rewards.to(torch.float32))
    except (KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"commit {commit.id[:10]} has a damaged probe set ({param!r:.200}): {exc}") from exc
    if len(probe.pairs) != param.get("n"):
        raise StoreError(f"commit {commit.id[:10]} has a damaged probe set: {len(probe.pairs)} pairs stored, "
                         f"its params say {param.get('n')}")
    return probe
