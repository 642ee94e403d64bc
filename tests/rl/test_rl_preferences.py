"""Fragmenter, B-Pref's synthetic teacher, PreferenceDataset files, query schedule and selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rewardkit.data.transitions import Segments, Transitions
from rewardkit.errors import ConfigError, DataError
from rewardkit.rl.preferences import (
    Fragmenter,
    PreferenceDataset,
    SyntheticGatherer,
    fragment_returns,
    preference_accuracy,
    query_schedule,
    select_queries,
)


def random_segments(m: int, length: int = 5, seed: int = 0, scale: float = 1.0) -> Segments:
    rng = np.random.default_rng(seed)
    return Segments(
        obs=rng.normal(size=(m, length, 3)),
        acts=rng.integers(0, 2, size=(m, length)),
        next_obs=rng.normal(size=(m, length, 3)),
        rews=scale * rng.normal(size=(m, length)),
        env_id="Toy-v0",
    )


def chain(n: int, ends: list[int], seed: int = 0) -> Transitions:
    """Transitions whose obs is the step index, so a fragment's steps show where they came from."""
    steps = np.arange(n, dtype=np.float32)
    dones = np.zeros(n, dtype=bool)
    dones[ends] = True
    return Transitions(
        obs=steps[:, None],
        acts=np.zeros(n, dtype=np.int64),
        rews=np.random.default_rng(seed).normal(size=n),
        next_obs=(steps + 1)[:, None],
        terminated=dones,
        truncated=np.zeros(n, dtype=bool),
    )


# --- Fragmenter ----------------------------------------------------------------------------------


def test_fragments_stay_inside_episodes_and_are_reproducible() -> None:
    t = chain(60, ends=[9, 14, 44, 59])  # episodes 0..9, 10..14, 15..44, 45..59
    f1, f2 = Fragmenter(seed=0)(t, fragment_length=8, num_pairs=200)
    assert len(f1) == len(f2) == 200 and f1.length == 8
    for fragments in (f1, f2):
        first = fragments.obs[:, 0, 0].astype(int)
        np.testing.assert_array_equal(fragments.obs[:, :, 0], first[:, None] + np.arange(8))  # consecutive steps
        last = first + 7
        episode_of = np.searchsorted([9, 14, 44, 59], np.stack([first, last]))
        np.testing.assert_array_equal(episode_of[0], episode_of[1])  # same episode at both ends
        assert not np.isin(first, np.arange(10, 15)).any()  # the 5-step episode is too short
    assert not (f1.obs[:, 0, 0] == f2.obs[:, 0, 0]).any()  # never a fragment against itself
    g1, g2 = Fragmenter(seed=0)(t, 8, 200)
    np.testing.assert_array_equal(g1.obs, f1.obs)
    np.testing.assert_array_equal(g2.obs, f2.obs)


def test_fragmenter_refuses_impossible_lengths() -> None:
    with pytest.raises(ConfigError, match="fragment_length 20: no episode in the 30 transitions is that long"):
        Fragmenter(seed=0)(chain(30, ends=[9, 19, 29]), 20, 3)


# --- SyntheticGatherer (B-Pref's teacher) ----------------------------------------------------------


def test_perfect_teacher_agrees_with_true_returns() -> None:
    f1, f2 = random_segments(500, seed=1), random_segments(500, seed=2)
    preferences, kept = SyntheticGatherer(beta=math.inf, gamma=1.0, mistake_rate=0.0, seed=0).label(f1, f2)
    assert kept.all()
    np.testing.assert_array_equal(preferences, (f1.rews.sum(1) > f2.rews.sum(1)).astype(np.float32))
    assert preferences.dtype == np.float32


def test_perfect_teacher_on_pendulum_fragments() -> None:
    pytest.importorskip("gymnasium", reason="the rl extra (gymnasium) is not installed")
    pytest.importorskip("stable_baselines3", reason="the rl extra (stable-baselines3) is not installed")
    from rewardkit.rl.rollout import collect

    f1, f2 = Fragmenter(seed=0)(collect("Pendulum-v1", 800, n_envs=2, seed=0), 20, 100)
    dataset = SyntheticGatherer()(f1, f2)
    assert len(dataset) == 100
    np.testing.assert_array_equal(dataset.preferences, (f1.rews.sum(1) > f2.rews.sum(1)).astype(np.float32))


def test_exact_tie_is_half() -> None:
    f1 = random_segments(4, seed=1)
    preferences, _ = SyntheticGatherer().label(f1, f1)
    np.testing.assert_array_equal(preferences, 0.5)


def test_equal_threshold_gives_half() -> None:
    f1, f2 = random_segments(400, seed=1), random_segments(400, seed=2)
    diff = np.abs(f1.rews.sum(1) - f2.rews.sum(1))
    threshold = float(np.quantile(diff, 0.3))
    preferences, _ = SyntheticGatherer(equal_threshold=threshold).label(f1, f2)
    equal = diff < threshold
    assert 100 < equal.sum() < 140
    np.testing.assert_array_equal(preferences[equal], 0.5)
    np.testing.assert_array_equal(preferences[~equal], (f1.rews.sum(1) > f2.rews.sum(1))[~equal])


def test_skip_threshold_drops_pairs_whose_returns_are_both_below() -> None:
    f1, f2 = random_segments(300, seed=1), random_segments(300, seed=2)
    r1, r2 = f1.rews.sum(1), f2.rews.sum(1)
    gatherer = SyntheticGatherer(skip_threshold=0.5)
    preferences, kept = gatherer.label(f1, f2)
    np.testing.assert_array_equal(kept, np.maximum(r1, r2) >= 0.5)
    assert 50 < (~kept).sum() < 250
    dataset = SyntheticGatherer(skip_threshold=0.5)(f1, f2)
    assert len(dataset) == kept.sum()
    np.testing.assert_array_equal(dataset.fragments1.rews, f1.rews[kept])
    np.testing.assert_array_equal(dataset.preferences, (r1 > r2)[kept])


def test_mistake_rate_flips_about_epsilon() -> None:
    f1, f2 = random_segments(4000, seed=1), random_segments(4000, seed=2)
    truth = (f1.rews.sum(1) > f2.rews.sum(1)).astype(np.float32)
    preferences, _ = SyntheticGatherer(mistake_rate=0.2, seed=3).label(f1, f2)
    flipped = (preferences != truth).mean()
    assert abs(flipped - 0.2) < 0.02  # binomial sd 0.006
    probabilities, _ = SyntheticGatherer(beta=1.0, mistake_rate=0.2, sample=False).label(f1, f2)
    exact = 1 / (1 + np.exp(-(f1.rews.sum(1) - f2.rews.sum(1))))
    np.testing.assert_allclose(probabilities, 0.2 * (1 - exact) + 0.8 * exact, rtol=1e-5)
    expected, _ = SyntheticGatherer(mistake_rate=0.2, sample=False).label(f1, f2)  # beta inf: no draws at all
    np.testing.assert_allclose(expected, np.where(truth == 1, 0.8, 0.2), rtol=1e-6)


def test_rationality_beta() -> None:
    f1, f2 = random_segments(4000, seed=1), random_segments(4000, seed=2)
    diff = f1.rews.sum(1) - f2.rews.sum(1)
    probabilities, _ = SyntheticGatherer(beta=0.5, sample=False).label(f1, f2)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-0.5 * diff)), rtol=1e-5)
    sampled, _ = SyntheticGatherer(beta=0.5, seed=0).label(f1, f2)
    assert set(np.unique(sampled)) <= {0.0, 1.0}
    assert abs(sampled.mean() - probabilities.mean()) < 0.02
    coin, _ = SyntheticGatherer(beta=0.0, sample=False).label(f1, f2)
    np.testing.assert_array_equal(coin, 0.5)


def test_myopia_gamma_weighs_the_end_of_the_segment() -> None:
    base = random_segments(1, length=3)
    first = Segments(base.obs, base.acts, base.next_obs, np.array([[5.0, 0.0, 0.0]]))
    second = Segments(base.obs, base.acts, base.next_obs, np.array([[0.0, 0.0, 1.0]]))
    assert SyntheticGatherer(gamma=1.0).label(first, second)[0][0] == 1.0  # 5 > 1
    assert SyntheticGatherer(gamma=0.1).label(first, second)[0][0] == 0.0  # 5 * 0.01 < 1


@pytest.mark.parametrize(
    ("knob", "value"),
    [("beta", -1.0), ("gamma", 1.5), ("mistake_rate", -0.1), ("equal_threshold", -1.0), ("beta", math.nan)],
)
def test_knobs_out_of_range(knob: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"^{knob} "):
        SyntheticGatherer(**{knob: value})


# --- PreferenceDataset ----------------------------------------------------------------------------


def labelled(m: int = 6) -> PreferenceDataset:
    return SyntheticGatherer()(random_segments(m, seed=1), random_segments(m, seed=2))


class FirstFeature:
    """A reward model scoring a step by its first observation feature (``sign`` flips it)."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign

    def score(self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return self.sign * obs[:, 0]


def test_preference_accuracy_counts_strict_labels_only() -> None:
    first, second = random_segments(40, seed=1), random_segments(40, seed=2)
    first, second = (Segments(s.obs, s.acts, s.next_obs, s.obs[..., 0], s.env_id) for s in (first, second))
    dataset = SyntheticGatherer()(first, second)  # labels from the sums of obs[..., 0]
    assert preference_accuracy(FirstFeature(), dataset) == 1.0
    assert preference_accuracy(FirstFeature(-1.0), dataset) == 0.0
    half = PreferenceDataset(first, second, np.where(np.arange(40) < 20, dataset.preferences, 0.5))
    assert preference_accuracy(FirstFeature(-1.0), half) == 0.0  # the 20 ties count neither way
    assert math.isnan(preference_accuracy(FirstFeature(), PreferenceDataset(first, second, np.full(40, 0.5))))


def test_dataset_round_trip_and_concatenation(tmp_path: Path) -> None:
    dataset = labelled()
    back = PreferenceDataset.load(dataset.save(tmp_path / "prefs.npz"))
    for name in ("obs", "acts", "next_obs", "rews"):
        np.testing.assert_array_equal(getattr(back.fragments1, name), getattr(dataset.fragments1, name))
        np.testing.assert_array_equal(getattr(back.fragments2, name), getattr(dataset.fragments2, name))
    np.testing.assert_array_equal(back.preferences, dataset.preferences)
    assert back.fragments1.env_id == "Toy-v0"
    both = dataset + back
    assert len(both) == 12
    np.testing.assert_array_equal(both.fragments2.obs[6:], dataset.fragments2.obs)


def arrays_of(dataset: PreferenceDataset) -> dict[str, np.ndarray]:
    out = {"preferences": dataset.preferences}
    for prefix, fragments in (("fragments1.", dataset.fragments1), ("fragments2.", dataset.fragments2)):
        out.update({prefix + k: getattr(fragments, k) for k in ("obs", "acts", "next_obs", "rews")})
    return out


def test_dataset_file_errors_name_file_field_row(tmp_path: Path) -> None:
    arrays = arrays_of(labelled())
    arrays["preferences"] = arrays["preferences"].copy()
    arrays["preferences"][3] = 1.5
    np.savez(tmp_path / "range.npz", **arrays)
    with pytest.raises(DataError, match=r"range\.npz: field 'preferences' row 3: value 1\.5"):
        PreferenceDataset.load(tmp_path / "range.npz")

    arrays = arrays_of(labelled())
    arrays["fragments2.obs"] = arrays["fragments2.obs"].copy()
    arrays["fragments2.obs"][2, 1, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(DataError, match=r"nan\.npz: field 'fragments2\.obs' row 2 step 1"):
        PreferenceDataset.load(tmp_path / "nan.npz")

    arrays = arrays_of(labelled())
    del arrays["fragments2.rews"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(DataError, match=r"missing\.npz: field 'fragments2\.rews' is missing"):
        PreferenceDataset.load(tmp_path / "missing.npz")

    arrays = arrays_of(labelled())
    arrays["fragments2.rews"] = arrays["fragments2.rews"][:, :4]
    np.savez(tmp_path / "length.npz", **arrays)
    with pytest.raises(DataError, match=r"length\.npz: field 'fragments2\.rews' row 0: segments of length 4"):
        PreferenceDataset.load(tmp_path / "length.npz")

    arrays = arrays_of(labelled())
    arrays["preferences"] = arrays["preferences"][:5]
    np.savez(tmp_path / "count.npz", **arrays)
    with pytest.raises(DataError, match=r"count\.npz: field 'preferences' row 5: shape \(5,\) but there are 6 pairs"):
        PreferenceDataset.load(tmp_path / "count.npz")


def test_pairs_must_match() -> None:
    with pytest.raises(DataError, match="field 'fragments2.obs' row 0: shape"):
        PreferenceDataset(random_segments(3), random_segments(3, length=4), np.ones(3))


# --- query schedule and selection ------------------------------------------------------------------


def test_query_schedule_matches_imitation() -> None:
    counts = query_schedule(700, 10)  # hyperbolic, 10% first
    assert sum(counts) == 700 and len(counts) == 11 and counts[0] == 70
    assert all(a >= b for a, b in zip(counts[1:], counts[2:], strict=False))  # decreasing rate
    rates = 1 / (1 + np.linspace(0, 1, 10))
    np.testing.assert_allclose(counts[1:], rates / rates.sum() * 630, atol=1)
    assert query_schedule(100, 4, schedule="constant", initial_fraction=0) == [0, 25, 25, 25, 25]
    assert query_schedule(10, 3, schedule=lambda t: 1.0, initial_fraction=0) == [0, 4, 3, 3]
    with pytest.raises(ConfigError, match="query schedule 'linear': unknown"):
        query_schedule(10, 3, schedule="linear")
    with pytest.raises(ConfigError, match="n_iterations=0"):
        query_schedule(10, 0)


def test_select_queries_random_and_by_disagreement() -> None:
    f1, f2 = random_segments(50, seed=1), random_segments(50, seed=2)
    chosen = select_queries(f1, f2, 10, seed=0)
    assert len(set(chosen.tolist())) == 10 and np.array_equal(chosen, select_queries(f1, f2, 10, seed=0))
    std = np.random.default_rng(0).random(50)
    top = select_queries(f1, f2, 5, disagreement=lambda a, b: std)
    np.testing.assert_array_equal(np.sort(top), np.sort(np.argsort(std)[-5:]))
    assert std[top].min() >= np.sort(std)[-5]
    with pytest.raises(ConfigError, match="n=51 but there are 50 candidate pairs"):
        select_queries(f1, f2, 51)
    with pytest.raises(ConfigError, match=r"disagreement returned shape \(3,\)"):
        select_queries(f1, f2, 5, disagreement=lambda a, b: np.ones(3))


def test_absorbing_fragments_make_survival_tasks_comparable() -> None:
    # CartPole-like: +1 per step until a termination; fragments inside episodes always tie
    t = chain(60, ends=[9, 14, 44, 59])
    t = Transitions(t.obs, t.acts, np.ones(60), t.next_obs, t.terminated, t.truncated)
    inside = SyntheticGatherer(seed=0)(*Fragmenter(seed=0)(t, fragment_length=8, num_pairs=100))
    assert (inside.preferences == 0.5).all()
    padded = SyntheticGatherer(seed=0)(*Fragmenter(seed=0, absorbing=True)(t, fragment_length=8, num_pairs=100))
    decided = padded.preferences != 0.5
    assert decided.sum() > 20
    live = [(~f.absorbing).sum(axis=1) for f in (padded.fragments1, padded.fragments2)]
    np.testing.assert_array_equal(padded.preferences[decided], (live[0] > live[1])[decided])  # longer life wins

    class StepCount:  # a learned reward of 2 per step, absorbing or not: absorbing steps must count 0
        @staticmethod
        def score(obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
            return np.full(len(obs), 2.0)

    np.testing.assert_array_equal(fragment_returns(StepCount.score, padded.fragments1), 2 * live[0])
    assert preference_accuracy(StepCount, padded) == 1.0


def test_dataset_with_absorbing_steps_round_trips(tmp_path: Path) -> None:
    t = chain(30, ends=[9, 29])
    pairs = SyntheticGatherer(seed=0)(*Fragmenter(seed=1, absorbing=True)(t, fragment_length=6, num_pairs=40))
    both = pairs + pairs
    back = PreferenceDataset.load(both.save(tmp_path / "p.npz"))
    for name in ("fragments1", "fragments2"):
        np.testing.assert_array_equal(getattr(back, name).absorbing, getattr(both, name).absorbing)
    assert back.fragments1.absorbing.any()
