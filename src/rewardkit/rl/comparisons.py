"""The preference loop: PPO and reward-model updates alternating (Christiano et al. 2017).

Imitation's ``PreferenceComparisons`` structure, rebuilt on our parts (imitation does not
install beside Gymnasium 1.x / SB3 2.x here): a query schedule
(:func:`~rewardkit.rl.preferences.query_schedule`) spreads the query budget over rounds;
in each round fresh roll-outs of the current policy (the untrained one in round 0) are cut
into candidate fragment pairs (:class:`~rewardkit.rl.preferences.Fragmenter`), the ones to
ask about are chosen at random or where the ensemble disagrees most
(:func:`~rewardkit.rl.preferences.select_queries`), the synthetic teacher labels them
(:class:`~rewardkit.rl.preferences.SyntheticGatherer`, B-Pref's knobs), the reward model is
trained on all labels so far (:func:`~rewardkit.training.segments.fit_preferences`), and
then the agent trains on the updated reward for the round's share of environment steps.

The agent is PPO, which is on-policy: each roll-out is scored by the reward model current
when it is collected and thrown away after one update, so no replay buffer holds stale
learned rewards and PEBBLE's relabelling (Lee et al. 2021, needed for off-policy learners
such as SAC) is not needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from rewardkit.data.transitions import Segments
from rewardkit.errors import ConfigError
from rewardkit.models.ensemble import RewardEnsemble
from rewardkit.rl.ppo import RecordingReward, ReturnCurves, StepProgress, make_ppo
from rewardkit.rl.preferences import (
    Fragmenter,
    PreferenceDataset,
    SyntheticGatherer,
    fragment_returns,
    query_schedule,
    select_queries,
)
from rewardkit.rl.rollout import collect
from rewardkit.training.segments import fit_preferences


@dataclass
class PreferenceComparisons:
    """Learn a reward model from preferences while a PPO agent trains on it.

    Attributes:
        env_id: A registered Gymnasium id.
        reward_model: A ``StateActionRewardModel`` or ``RewardEnsemble`` of them, trained in place.
        gatherer: The teacher that labels pairs.
        fragment_length: Steps per fragment (L).
        query_selection: ``"random"`` or ``"disagreement"`` (needs an ensemble of 2 or more).
        candidate_oversampling: With disagreement selection, candidate pairs per query.
        initial_comparison_frac: Share of the queries asked before the agent trains.
        n_envs: Environments stepped together (PPO and the query roll-outs).
        n_steps: Steps per environment in each PPO roll-out, at most (lowered so that a round of
            agent training is at least one roll-out).
        reward_epochs: Passes over all labels at each reward-model update.
        reward_lr: Adam learning rate of the reward model.
        reward_batch_size: Pairs per reward-model step.
        absorbing: Let fragments run past terminated episode ends, padded with zero-reward
            absorbing steps (:class:`~rewardkit.rl.preferences.Fragmenter`); once a labelled
            pair has such padding, the model's config gets ``zero_after_termination``
            (:func:`~rewardkit.training.segments.fit_preferences`; PPO then scales its reward
            without centring it). Tasks that never terminate are unaffected.
        seed: Seed of the agent, the environments, the fragmenter and the selection.
    """

    env_id: str
    reward_model: nn.Module
    gatherer: SyntheticGatherer
    fragment_length: int = 25
    query_selection: str = "random"
    candidate_oversampling: int = 5
    initial_comparison_frac: float = 0.1
    n_envs: int = 4
    n_steps: int = 256
    reward_epochs: int = 10
    reward_lr: float = 1e-3
    reward_batch_size: int = 32
    absorbing: bool = True
    seed: int = 0
    dataset: PreferenceDataset | None = field(default=None, init=False)
    curves: list[dict[str, float]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.query_selection not in ("random", "disagreement"):
            raise ConfigError(f"query selection '{self.query_selection}': use random or disagreement")
        if self.query_selection == "disagreement" and len(getattr(self.reward_model, "members", ())) < 2:
            raise ConfigError("query selection 'disagreement' needs an ensemble of at least 2 reward models "
                              "(--ensemble 2 or more)")
        if self.fragment_length < 1:
            raise ConfigError(f"fragment length {self.fragment_length}: must be at least 1")
        self.reward = RecordingReward(self.reward_model)
        self.agent: Any = None
        self.fragmenter = Fragmenter(seed=self.seed, absorbing=self.absorbing)

    @property
    def n_queries(self) -> int:
        """Labelled pairs so far (skipped pairs are not counted)."""
        return 0 if self.dataset is None else len(self.dataset)

    def train(self, total_timesteps: int, total_comparisons: int, *, n_iterations: int = 5,
              advance: Callable[[int], None] = lambda n: None) -> list[dict[str, float]]:
        """Run the loop: ``n_iterations + 1`` query rounds, the agent trained after rounds 1 to ``n_iterations``.

        Args:
            total_timesteps: PPO environment steps in all (query roll-outs not counted).
            total_comparisons: Queries to ask in all (the teacher may skip some).
            n_iterations: Agent-training rounds; the budget is shared as imitation's
                hyperbolic schedule shares it.
            advance: Called with the environment steps of each PPO step (a progress bar).

        Returns:
            The curve rows (see :class:`~rewardkit.rl.ppo.ReturnCurves`), with the query count.

        Raises:
            ConfigError: A budget out of range, or no episode as long as a fragment.
        """
        if total_timesteps < 1 or total_comparisons < 1 or n_iterations < 1:
            raise ConfigError(f"total_timesteps {total_timesteps}, queries {total_comparisons}, iterations "
                              f"{n_iterations}: each must be at least 1")
        schedule = query_schedule(total_comparisons, n_iterations, initial_fraction=self.initial_comparison_frac)
        steps = np.diff(np.linspace(0, total_timesteps, n_iterations + 1).round().astype(int))
        # PPO learns whole roll-outs: a roll-out no longer than a round keeps each round (and the total) in budget
        n_steps = max(1, min(self.n_steps, int(steps.min()) // self.n_envs))
        self.agent = make_ppo(self.env_id, self.reward, seed=self.seed, n_envs=self.n_envs, n_steps=n_steps)
        recorder = ReturnCurves(self.seed, self.reward, queries=lambda: self.n_queries)
        for round_, n_queries in enumerate(schedule):
            if n_queries:
                self._query_and_fit(n_queries, round_)
            if round_ > 0 and steps[round_ - 1] > 0:
                if self.dataset is None:
                    raise ConfigError("no pair was labelled before the agent trains (the teacher skipped them all); "
                                      "lower --skip-threshold")
                self.agent.learn(int(steps[round_ - 1]), reset_num_timesteps=False,
                                 callback=[recorder, StepProgress(advance)])
        self.curves = recorder.rows
        return self.curves

    def _query_and_fit(self, n_queries: int, round_: int) -> None:
        """Ask ``n_queries`` about fragments of fresh roll-outs of the agent, then refit the reward model."""
        assert self.agent is not None
        candidates = n_queries * (self.candidate_oversampling if self.query_selection == "disagreement" else 1)
        n_steps = max(2 * self.fragment_length * candidates, 4 * self.fragment_length * self.n_envs, 500)
        transitions = collect(self.env_id, n_steps, n_envs=self.n_envs, policy=self.agent,
                              seed=self.seed + 1000 * (round_ + 1))
        fragments1, fragments2 = self.fragmenter(transitions, self.fragment_length, candidates)
        disagreement = self._disagreement if self.query_selection == "disagreement" else None
        chosen = select_queries(fragments1, fragments2, n_queries, disagreement=disagreement,
                                seed=self.seed + round_)
        labelled = self.gatherer(fragments1.take(chosen), fragments2.take(chosen))
        if not len(labelled):
            return
        self.dataset = labelled if self.dataset is None else self.dataset + labelled
        self.reward_model.update_obs_normalizer(np.concatenate([labelled.fragments1.obs, labelled.fragments2.obs])
                                                .reshape(-1, *labelled.fragments1.obs.shape[2:]))
        d = self.dataset
        fit_preferences(self.reward_model, d.fragments1, d.fragments2, d.preferences, epochs=self.reward_epochs,
                        batch_size=self.reward_batch_size, lr=self.reward_lr, seed=self.seed + round_,
                        update_normalizer=False)

    def _disagreement(self, fragments1: Segments, fragments2: Segments) -> np.ndarray:
        """Standard deviation over ensemble members of P(fragment 1 preferred), ``(M,)``."""
        assert isinstance(self.reward_model, RewardEnsemble)
        returns = [fragment_returns(self.reward_model.score_members, f) for f in (fragments1, fragments2)]
        probs = 1 / (1 + np.exp(-np.clip(returns[0] - returns[1], -50, 50)))
        return probs.std(axis=0, ddof=1)
