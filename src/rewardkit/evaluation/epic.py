"""EPIC distance between reward functions (Gleave et al. 2021, "Quantifying Differences in Reward Functions").

Two rewards that differ by potential shaping, ``R'(s, a, s') = R(s, a, s') + γΦ(s') − Φ(s)``,
or by a positive scale, induce the same optimal policies; EPIC is 0 between them. It
canonicalises each reward to remove shaping (Gleave et al. 2021, Definition 4.1),

    ``C(R)(s, a, s') = R(s, a, s') + E[γR(s', A, S') − R(s, A, S') − γR(S, A, S')]``

with ``S, S' ~ D_S`` and ``A ~ D_A`` independent (the coverage distributions), and
returns the Pearson distance ``D_ρ(X, Y) = sqrt((1 − ρ(X, Y)) / 2)`` of the canonical
rewards over transitions ``(s, a, s') ~ D`` (Definition 4.2). It lies in [0, 1]: 0 for
equivalent rewards, 1 for a reward and its negation.

The expectations are estimated from ``m`` samples of D_S and D_A (the sample-based
canonicalisation of the authors' ``evaluating_rewards.distances.epic_sample.sample_canon_shaping``,
HumanCompatibleAI/evaluating-rewards); because both rewards see the same samples, shaping
cancels exactly, not only in expectation. As there, episodes are treated as never ending
(EPIC is defined on infinite-horizon MDPs): ``terminated`` plays no part. The interval is a
percentile bootstrap over the ``n`` Pearson transitions, the canonical values held fixed.
Rewards are plain callables ``R(obs, acts, next_obs) -> (n,) array``, so a model's
``score`` and a ground-truth function go in alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rewardkit.errors import DataError, RewardkitError
from rewardkit.models.spaces import check_finite

#: ``R(obs (n, *obs_shape), acts (n, ...), next_obs (n, *obs_shape)) -> (n,) rewards``.
RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
#: Rows per reward call while estimating the expectations.
_CHUNK_ROWS = 1 << 18


@dataclass(frozen=True)
class EpicResult:
    """EPIC distance with its bootstrap interval and the sample sizes behind it.

    Attributes:
        distance: Pearson distance of the canonical rewards, in [0, 1].
        ci_low: Lower end of the percentile bootstrap interval.
        ci_high: Upper end.
        n_samples: Transitions ``(s, a, s')`` the correlation is taken over.
        n_mean_samples: Samples of states and actions behind each canonicalising expectation.
        discount: The γ of the canonicalisation.
        level: Coverage of the interval (0.95 for 95%).
    """

    distance: float
    ci_low: float
    ci_high: float
    n_samples: int
    n_mean_samples: int
    discount: float
    level: float


def epic_distance(
    reward_a: RewardFn,
    reward_b: RewardFn,
    obs: np.ndarray,
    acts: np.ndarray,
    next_obs: np.ndarray,
    *,
    discount: float,
    mean_obs: np.ndarray | None = None,
    mean_acts: np.ndarray | None = None,
    n_mean_samples: int = 256,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> EpicResult:
    """EPIC distance between two rewards over sampled transitions (see the module docstring).

    Args:
        reward_a: First reward, ``R(obs, acts, next_obs) -> (n,)``.
        reward_b: Second reward.
        obs: ``(n, *obs_shape)`` states of the Pearson transitions (e.g. from roll-outs).
        acts: ``(n, ...)`` their actions.
        next_obs: ``(n, *obs_shape)`` their next states.
        discount: γ, as in the environment's MDP, in [0, 1].
        mean_obs: ``(m, *obs_shape)`` samples of the state coverage distribution D_S; default
            ``n_mean_samples`` states drawn from ``obs`` and ``next_obs``.
        mean_acts: ``(m, ...)`` samples of the action distribution D_A; default drawn from
            ``acts`` independently of the states.
        n_mean_samples: ``m`` when the samples are drawn here.
        n_bootstrap: Bootstrap resamples of the transitions for the interval.
        level: Coverage of the interval.
        seed: Seed of the drawing and the resampling.

    Returns:
        The distance, its interval and sample sizes.

    Raises:
        DataError: Inputs of different lengths, NaN or inf in them, or a reward returning
            NaN, inf or the wrong shape.
        RewardkitError: A reward is constant after canonicalisation (it is potential
            shaping of a constant), where the Pearson distance is undefined.
    """
    if not 0.0 <= discount <= 1.0:
        raise DataError(f"discount is {discount!r}; expected γ in [0, 1]")
    obs, acts, next_obs = (np.asarray(x) for x in (obs, acts, next_obs))
    _check_transitions(obs, acts, next_obs)
    rng = np.random.default_rng(seed)
    if mean_obs is None:
        states = np.concatenate([obs, next_obs])
        mean_obs = states[rng.choice(len(states), size=n_mean_samples, replace=len(states) < n_mean_samples)]
    if mean_acts is None:
        mean_acts = acts[rng.choice(len(acts), size=len(mean_obs), replace=len(acts) < len(mean_obs))]
    mean_obs, mean_acts = np.asarray(mean_obs), np.asarray(mean_acts)
    if len(mean_obs) != len(mean_acts) or len(mean_obs) == 0:
        raise DataError(f"mean_obs has {len(mean_obs)} rows and mean_acts {len(mean_acts)}; "
                        "expected the same positive number of samples")
    check_finite("mean_obs", mean_obs)
    check_finite("mean_acts", mean_acts)
    canon = [canonicalize(r, obs, acts, next_obs, mean_obs, mean_acts, discount=discount, name=name)
             for r, name in ((reward_a, "reward_a"), (reward_b, "reward_b"))]
    for values, name in zip(canon, ("reward_a", "reward_b"), strict=True):
        if np.ptp(values) <= 1e-12 * max(1.0, float(np.abs(values).max())):
            raise RewardkitError(f"{name} is constant after canonicalisation (a constant reward up to potential "
                                 "shaping): its EPIC distance to any reward is undefined")
    distance = pearson_distance(*canon)
    low, high = _bootstrap(canon[0], canon[1], n_bootstrap, level, rng)
    return EpicResult(distance=distance, ci_low=low, ci_high=high, n_samples=len(obs),
                      n_mean_samples=len(mean_obs), discount=discount, level=level)


def canonicalize(
    reward: RewardFn,
    obs: np.ndarray,
    acts: np.ndarray,
    next_obs: np.ndarray,
    mean_obs: np.ndarray,
    mean_acts: np.ndarray,
    *,
    discount: float,
    name: str = "reward",
) -> np.ndarray:
    """Canonically shaped reward ``C(R)(s, a, s')`` of ``n`` transitions, float64 ``(n,)``.

    Each expectation over ``(A, S')`` averages ``R(x, mean_acts[j], mean_obs[j])`` over the
    ``m`` samples; ``E[R(S, A, S')]`` averages over all ``m × m`` pairs of a state sample
    with an (action, next state) sample. Costs ``2nm + m²`` reward evaluations.

    Raises:
        DataError: The reward returns NaN, inf or a shape other than ``(rows,)``.
    """
    expect_next = _mean_over_samples(reward, next_obs, mean_obs, mean_acts, name)
    expect_here = _mean_over_samples(reward, obs, mean_obs, mean_acts, name)
    expect_all = float(_mean_over_samples(reward, mean_obs, mean_obs, mean_acts, name).mean())
    return _call(reward, obs, acts, next_obs, name) + discount * expect_next - expect_here - discount * expect_all


def pearson_distance(x: np.ndarray, y: np.ndarray) -> float:
    """``sqrt((1 − ρ) / 2)`` with ρ the Pearson correlation of ``x`` and ``y`` (both ``(n,)``); in [0, 1].

    NaN when either is constant (ρ undefined); :func:`epic_distance` refuses that case first.
    """
    rho = float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
    return float(np.sqrt((1.0 - rho) / 2.0))


def _mean_over_samples(
    reward: RewardFn, states: np.ndarray, mean_obs: np.ndarray, mean_acts: np.ndarray, name: str
) -> np.ndarray:
    """``mean_j R(states[i], mean_acts[j], mean_obs[j])`` for every i: ``(len(states),) float64``."""
    m = len(mean_obs)
    per_chunk = max(1, _CHUNK_ROWS // m)
    out = []
    for start in range(0, len(states), per_chunk):
        chunk = states[start : start + per_chunk]
        k = len(chunk)
        rews = _call(reward, np.repeat(chunk, m, axis=0), np.tile(mean_acts, (k,) + (1,) * (mean_acts.ndim - 1)),
                     np.tile(mean_obs, (k,) + (1,) * (mean_obs.ndim - 1)), name)
        out.append(rews.reshape(k, m).mean(axis=1))
    return np.concatenate(out)


def _call(reward: RewardFn, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray, name: str) -> np.ndarray:
    """``reward(obs, acts, next_obs)`` as float64 ``(n,)``, refused if misshapen or not finite."""
    rews: Any = np.asarray(reward(obs, acts, next_obs), dtype=np.float64)
    if rews.shape != (len(obs),):
        raise DataError(f"{name} returned shape {rews.shape} for {len(obs)} transitions; expected ({len(obs)},)")
    if not np.isfinite(rews).all():
        raise DataError(f"{name} returned NaN or inf for transition {int(np.flatnonzero(~np.isfinite(rews))[0])}")
    return rews


def _check_transitions(obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> None:
    """Refuse transitions of different lengths or shapes, or holding NaN/inf."""
    if obs.ndim == 0 or len(obs) < 2 or len(acts) != len(obs) or next_obs.shape != obs.shape:
        raise DataError(f"obs {obs.shape}, acts {acts.shape} and next_obs {next_obs.shape} must hold the same "
                        "number (at least 2) of transitions, and obs and next_obs the same shape")
    for name, values in (("obs", obs), ("acts", acts), ("next_obs", next_obs)):
        check_finite(name, values)


def _bootstrap(x: np.ndarray, y: np.ndarray, n_resamples: int, level: float,
               rng: np.random.Generator) -> tuple[float, float]:
    """Percentile interval of the Pearson distance over resamples of the paired values."""
    n = len(x)
    per_chunk = max(1, (1 << 22) // n)
    distances = []
    for start in range(0, n_resamples, per_chunk):
        idx = rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n))
        xs, ys = x[idx], y[idx]
        xs = xs - xs.mean(axis=1, keepdims=True)
        ys = ys - ys.mean(axis=1, keepdims=True)
        denom = np.sqrt((xs**2).sum(axis=1) * (ys**2).sum(axis=1))
        rho = np.divide((xs * ys).sum(axis=1), denom, out=np.ones(len(idx)), where=denom > 0)
        distances.append(np.sqrt((1.0 - np.clip(rho, -1.0, 1.0)) / 2.0))
    all_distances = np.concatenate(distances)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(all_distances, alpha)), float(np.quantile(all_distances, 1.0 - alpha))
