r"""Merge strategies: pure functions combining one tensor's versions in weight space.

Every strategy takes the tensor at the merge-base (``base``) and its versions on the sides
being merged (``sides``, HEAD's first), all of one shape and floating dtype, and returns
the merged tensor in that dtype. The arithmetic runs in float32 (float64 for a float64
tensor) and is cast back once, so a bf16 or fp16 model loses no more than one rounding.
Most are written over task vectors :math:`\delta_i = \theta_i - \theta_\text{base}` (Ilharco et al. 2023).

The store (:mod:`rewardkit.store.merge`) calls a strategy only for a tensor that changed on
several sides, with only those sides; a tensor changed on one side is taken from it as is,
as git takes a one-sided change. :func:`combine` picks the strategy by name.

Weights are per side, in the order of ``sides``; ``None`` means 1 for every side.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

from rewardkit.errors import StoreError

#: Strategy names, as ``rewardkit merge --strategy`` takes them.
STRATEGIES = ("average", "task-arithmetic", "ties", "dare", "ours", "theirs")
#: Strategies that pick one side's version instead of computing a new tensor.
PICKING = ("ours", "theirs")
#: Default kept fraction of each task vector: TIES keeps the top 20% (Yadav et al. 2023, k=20).
TIES_DENSITY = 0.2
#: Default kept fraction for DARE, i.e. drop rate p = 0.5 (Yu et al. 2024 use p up to 0.9 on
#: 7B+ models; smaller models tolerate less dropping).
DARE_DENSITY = 0.5


def average(sides: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    r"""Weighted mean of the sides: :math:`\sum_i w_i \theta_i / \sum_i w_i`.

    With several reward models fine-tuned from one base this is WARM (Ramé et al. 2024,
    "WARM: On the Benefits of Weight Averaged Reward Models"). The weights are normalised to
    sum to 1, and the mean is computed as :math:`\theta_1 + \sum_i w_i (\theta_i - \theta_1)`
    (the same number, rounded less), so averaging N identical models returns the model
    exactly, in every dtype.

    Args:
        sides: The versions, all of one shape and floating dtype.
        weights: One non-negative weight per side with a positive sum; None: uniform.

    Returns:
        The mean, in the sides' dtype.
    """
    w = _weights(weights, len(sides), normalise=True)
    anchor = _work(sides[0])
    out = anchor + sum(wi * (_work(t) - anchor) for wi, t in zip(w, sides, strict=True))
    return _cast(out, sides[0])


def task_arithmetic(
    base: torch.Tensor, sides: Sequence[torch.Tensor], weights: Sequence[float] | None = None, lam: float = 1.0
) -> torch.Tensor:
    r"""Task arithmetic (Ilharco et al. 2023): :math:`\theta_b + \lambda \sum_i w_i (\theta_i - \theta_b)`.

    Args:
        base: The tensor at the merge-base.
        sides: The versions, shaped and typed like ``base``.
        weights: One weight per side (not normalised); None: all 1.
        lam: Scale :math:`\lambda` of the summed task vector.

    Returns:
        The merged tensor, in ``base``'s dtype.
    """
    w = _weights(weights, len(sides), normalise=False)
    b = _work(base)
    delta = sum(wi * (_work(t) - b) for wi, t in zip(w, sides, strict=True))
    return _cast(b + lam * delta, base)


def ties(
    base: torch.Tensor,
    sides: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    lam: float = 1.0,
    density: float = TIES_DENSITY,
) -> torch.Tensor:
    r"""TIES-merging (Yadav et al. 2023, "TIES-Merging: Resolving Interference When Merging Models").

    1. Trim: keep the :math:`k = \lceil \text{density} \cdot n \rceil` entries of largest
       magnitude of each task vector :math:`\delta_i = w_i(\theta_i - \theta_b)`, zero the rest
       (per tensor, as the merge streams tensor by tensor; the paper trims per model).
    2. Elect: :math:`\gamma = \operatorname{sign}(\sum_i \hat\delta_i)`.
    3. Disjoint mean: :math:`\tau = \sum_{i \in A} \hat\delta_i / \sum_{i \in A} w_i` over the
       sides :math:`A` whose trimmed entry is non-zero with sign :math:`\gamma` (0 where none);
       with equal weights this is the paper's plain mean of the agreeing entries.
    4. :math:`\theta_b + \lambda \tau`.

    Args:
        base: The tensor at the merge-base.
        sides: The versions, shaped and typed like ``base``.
        weights: One positive weight per side, scaling its task vector; None: all 1.
        lam: Scale :math:`\lambda` of the merged task vector.
        density: Fraction of each task vector's entries kept, in (0, 1].

    Returns:
        The merged tensor, in ``base``'s dtype.
    """
    _check_fraction("density", density)
    w = _weights(weights, len(sides), normalise=False)
    b = _work(base)
    trimmed = [wi * _trim(_work(t) - b, density) for wi, t in zip(w, sides, strict=True)]
    elected = torch.sign(sum(trimmed))
    total, w_agree = torch.zeros_like(b), torch.zeros_like(b)
    for wi, delta in zip(w, trimmed, strict=True):  # one side at a time: memory ~ sides + 4 tensors
        agree = (torch.sign(delta) == elected) & (delta != 0)
        total += torch.where(agree, delta, 0)
        w_agree += agree * wi
    tau = torch.where(w_agree > 0, total / w_agree.clamp(min=torch.finfo(b.dtype).tiny), 0)
    return _cast(b + lam * tau, base)


def dare(
    base: torch.Tensor,
    sides: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    lam: float = 1.0,
    density: float = DARE_DENSITY,
    *,
    seed: int = 0,
    name: str = "",
) -> torch.Tensor:
    r"""DARE (Yu et al. 2024, "Language Models are Super Mario"): drop and rescale, then task arithmetic.

    Each entry of each task vector :math:`\delta_i = \theta_i - \theta_b` is dropped with
    probability :math:`p = 1 - \text{density}` and the kept ones are rescaled by
    :math:`1/(1-p)`, so the expectation is unchanged:
    :math:`\theta_b + \lambda \sum_i w_i\, m_i \odot \delta_i / (1-p)`,
    :math:`m_i \sim \text{Bernoulli}(1-p)`. The masks come from a generator seeded by
    ``(seed, name, i)`` (:func:`dare_generator`), so a merge is reproducible and does not
    depend on the order tensors are visited.

    Args:
        base: The tensor at the merge-base.
        sides: The versions, shaped and typed like ``base``.
        weights: One weight per side (not normalised); None: all 1.
        lam: Scale :math:`\lambda` of the summed task vector.
        density: Kept fraction :math:`1-p`, in (0, 1]; 1 is plain task arithmetic.
        seed: Seed of the merge.
        name: The tensor's name (part of each mask's seed).

    Returns:
        The merged tensor, in ``base``'s dtype.
    """
    _check_fraction("density", density)
    w = _weights(weights, len(sides), normalise=False)
    b = _work(base)
    delta = torch.zeros_like(b)
    for i, (wi, t) in enumerate(zip(w, sides, strict=True)):
        keep = torch.rand(b.shape, generator=dare_generator(seed, name, i)) < density
        delta += wi * torch.where(keep, _work(t) - b, 0) / density
    return _cast(b + lam * delta, base)


def dare_generator(seed: int, name: str, side: int) -> torch.Generator:
    """The CPU generator of DARE's mask for side ``side`` of tensor ``name``: seeded by SHA-256 of all three."""
    digest = hashlib.sha256(f"{seed}\0{name}\0{side}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def ours(sides: Sequence[torch.Tensor]) -> torch.Tensor:
    """HEAD's version (the first side), as ``git merge -X ours`` resolves a conflict."""
    return sides[0]


def theirs(sides: Sequence[torch.Tensor]) -> torch.Tensor:
    """The merged branch's version (the last side), as ``git merge -X theirs`` resolves a conflict."""
    return sides[-1]


def combine(
    strategy: str,
    base: torch.Tensor | None,
    sides: Sequence[torch.Tensor],
    *,
    weights: Sequence[float] | None = None,
    lam: float = 1.0,
    density: float | None = None,
    seed: int = 0,
    name: str = "",
) -> torch.Tensor:
    """Merge one tensor with the strategy named ``strategy`` (one of :data:`STRATEGIES`).

    ``density`` None takes the strategy's default (:data:`TIES_DENSITY`, :data:`DARE_DENSITY`).
    ``base`` may be None for ``average``, ``ours`` and ``theirs``, which do not use it.

    Raises:
        StoreError: Unknown strategy, a non-floating tensor, or no base for a strategy that needs one.
    """
    if strategy == "average":
        return average(sides, weights)
    if strategy == "ours":
        return ours(sides)
    if strategy == "theirs":
        return theirs(sides)
    if base is None:
        raise StoreError(f"merge strategy {strategy!r} needs the tensor at the merge-base")
    if strategy == "task-arithmetic":
        return task_arithmetic(base, sides, weights, lam)
    if strategy == "ties":
        return ties(base, sides, weights, lam, TIES_DENSITY if density is None else density)
    if strategy == "dare":
        return dare(base, sides, weights, lam, DARE_DENSITY if density is None else density, seed=seed, name=name)
    raise StoreError(f"unknown merge strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")


def check_strategy(strategy: str, weights: Sequence[float] | None, n_sides: int, density: float | None) -> None:
    """Refuse a strategy name, weights or density before any work.

    Raises:
        StoreError: Unknown strategy; weights not one per side (``n_sides``), negative, not
            finite, or (for ``average``) summing to 0; density outside (0, 1].
    """
    if strategy not in STRATEGIES:
        raise StoreError(f"unknown merge strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    if weights is not None:
        if len(weights) != n_sides:
            raise StoreError(f"--weights has {len(weights)} values for {n_sides} models; give one per model, "
                             "HEAD first, e.g. --weights 0.5,0.5")
        _weights(weights, n_sides, normalise=strategy == "average")
    if density is not None:
        _check_fraction("density (--density)", density)


def _weights(weights: Sequence[float] | None, n: int, *, normalise: bool) -> list[float]:
    if weights is None:
        return [1.0 / n if normalise else 1.0] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise StoreError(f"{len(w)} merge weights for {n} models; give one per model")
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise StoreError(f"merge weights must be finite and non-negative, got {list(weights)}")
    if normalise:
        total = sum(w)
        if total <= 0:
            raise StoreError(f"merge weights sum to {total}; give at least one positive weight")
        w = [x / total for x in w]
    return w


def _check_fraction(what: str, value: float) -> None:
    if not (0 < value <= 1):
        raise StoreError(f"{what} must be in (0, 1], got {value}")


def _trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """``delta`` with all but its ``ceil(density * n)`` largest-magnitude entries zeroed (ties broken arbitrarily)."""
    k = math.ceil(density * delta.numel())
    if k >= delta.numel():
        return delta
    flat = delta.reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.abs().topk(k, sorted=False).indices] = True
    return torch.where(keep, flat, 0).reshape(delta.shape)


def _work(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the dtype the arithmetic runs in: float32, or float64 for a float64 tensor."""
    if not t.is_floating_point():
        raise StoreError(f"cannot merge a {t.dtype} tensor in weight space; only floating-point tensors merge")
    return t.to(torch.float64 if t.dtype == torch.float64 else torch.float32)


def _cast(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return out.to(like.dtype)
