"""Task families: environments whose dynamics stay while the reward changes from task to task.

Multi-task and meta-learning of rewards (issue 8, section 5) need many tasks that share
states, actions and transitions: then one set of roll-outs serves every task, relabelled
with each task's reward (:meth:`TaskFamily.relabel`), and only the reward model has to
tell the tasks apart. The families here follow the MAML paper (Finn et al. 2017, sec. 5.3:
HalfCheetah with a target velocity, and forward/backward) and a goal-angle Pendulum:

- ``pendulum-goal`` (Pendulum-v1): hold the pole at a goal angle g,
  ``r = -(angle_normalize(θ - g)² + 0.1 θ̇² + 0.001 u²)``, θ = atan2(obs[1], obs[0]) and
  θ̇ = obs[2] of the observation the action was taken in, u clipped to [-2, 2]. With g = 0
  this is Pendulum-v1's own reward (``gymnasium/envs/classic_control/pendulum.py``, ``step``).
- ``halfcheetah-velocity`` (HalfCheetah-v5): run at a target velocity v*,
  ``r = -|v - v*| - 0.1 |a|²``.
- ``halfcheetah-direction`` (HalfCheetah-v5): run forward (d = +1) or backward (d = -1),
  ``r = d v - 0.1 |a|²``.

HalfCheetah-v5 does not expose the x position, so v is the torso's x velocity ``qvel[0]``
after the step, ``next_obs[8]`` (the observation is ``qpos[1:]`` (8 values) then ``qvel``
(9), see ``half_cheetah_v5.py``, ``_get_obs``), as in the MAML code (rllab's
``get_body_comvel("torso")``). The environment's own forward reward uses the finite
difference ``(x_after - x_before) / dt`` over the 5 physics steps of one step instead, so
the direction task d = +1 is close to, not equal to, HalfCheetah-v5's reward (the tests
check how close).

Task parameters are vectors (:attr:`Task.params`) so a
:class:`~rewardkit.models.TaskConditionedRewardModel` can take them
(``task_param_dim``) or learn an embedding of :attr:`Task.index` (``n_tasks``).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from rewardkit.data.transitions import Segments, Transitions
from rewardkit.errors import ConfigError, DataError

#: Which tasks of a family: those to train on, those kept for evaluation, or both.
Split = Literal["train", "held-out", "all"]
SPLITS: tuple[str, ...] = ("train", "held-out", "all")
RecordT = TypeVar("RecordT", Transitions, Segments)


@dataclass(frozen=True)
class Task:
    """One task of a family.

    Attributes:
        family: The family's name, e.g. ``"pendulum-goal"``.
        index: Position in ``family.tasks("all")``: the id a learned task embedding uses.
        params: The task's parameters (goal angle in radians, target velocity in m/s, direction).
        name: Readable label, e.g. ``"goal=+1.57"``.
    """

    family: str
    index: int
    params: tuple[float, ...]
    name: str


class TaskFamily(ABC):
    """Tasks over one environment that differ only in their reward.

    Subclasses set :attr:`name`, :attr:`env_id` and :attr:`param_names` and implement
    :meth:`_all_params`, :meth:`_held_out` and :meth:`_reward`.
    """

    name: str
    env_id: str
    param_names: tuple[str, ...]

    @abstractmethod
    def _all_params(self) -> list[tuple[float, ...]]:
        """Every task's parameters, in index order."""

    @abstractmethod
    def _held_out(self, index: int) -> bool:
        """Whether task ``index`` is held out of training."""

    @abstractmethod
    def _reward(self, params: np.ndarray, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Reward ``(n,) float64`` of ``n`` transitions (2-D ``obs``/``next_obs``, ``acts``) under ``params``."""

    @property
    def task_param_dim(self) -> int:
        """Width of a task's parameter vector (``TaskConditionedConfig.task_param_dim``)."""
        return len(self.param_names)

    def tasks(self, split: Split = "all") -> list[Task]:
        """The tasks of ``split``, in index order.

        Raises:
            ConfigError: ``split`` is not ``"train"``, ``"held-out"`` or ``"all"``.
        """
        if split not in SPLITS:
            raise ConfigError(f"split {split!r}: expected one of {', '.join(SPLITS)}")
        out = []
        for i, params in enumerate(self._all_params()):
            held_out = self._held_out(i)
            if split == "all" or held_out == (split == "held-out"):
                label = ", ".join(f"{n}={v:+.2f}" for n, v in zip(self.param_names, params, strict=True))
                out.append(Task(self.name, i, tuple(float(p) for p in params), label))
        return out

    def task(self, index: int) -> Task:
        """Task ``index`` of :meth:`tasks` ``("all")``.

        Raises:
            ConfigError: No such task.
        """
        tasks = self.tasks("all")
        if not 0 <= index < len(tasks):
            raise ConfigError(f"task {index}: family {self.name} has tasks 0..{len(tasks) - 1}")
        return tasks[index]

    def reward(self, task: Task, obs: Any, acts: Any, next_obs: Any) -> np.ndarray:
        """The true reward of ``task`` for a batch of transitions, vectorised.

        Args:
            task: A task of this family.
            obs: ``(n, *obs_shape)`` observations the actions were taken in (or ``(M, L, ...)`` segments).
            acts: ``(n, *act_shape)`` actions (or ``(M, L, ...)``).
            next_obs: ``(n, *obs_shape)`` observations after the step (or ``(M, L, ...)``).

        Returns:
            ``(n,)`` (or ``(M, L)``) float32 rewards.

        Raises:
            ConfigError: ``task`` belongs to another family.
            DataError: The arrays do not fit the environment's spaces.
        """
        if task.family != self.name:
            raise ConfigError(f"task {task.name} belongs to family {task.family}, not {self.name}")
        obs, acts, next_obs = (np.asarray(a, dtype=np.float64) for a in (obs, acts, next_obs))
        lead = obs.shape[:-1]
        width = self.observation_width
        if obs.shape[-1:] != (width,) or next_obs.shape != obs.shape or acts.shape[: len(lead)] != lead:
            raise DataError(f"{self.name}: obs {obs.shape}, acts {acts.shape}, next_obs {next_obs.shape} do not fit "
                            f"{self.env_id} (observations of {width} values, one action per observation)")
        flat_acts = acts.reshape(math.prod(lead), math.prod(acts.shape[len(lead):]))
        flat = self._reward(np.asarray(task.params, dtype=np.float64), obs.reshape(-1, width), flat_acts,
                            next_obs.reshape(-1, width))
        return flat.reshape(lead).astype(np.float32)

    @property
    @abstractmethod
    def observation_width(self) -> int:
        """Values in one observation of :attr:`env_id`."""

    def relabel(self, record: RecordT, task: Task) -> RecordT:
        """The same transitions (or segments) with ``rews`` replaced by ``task``'s reward.

        One set of roll-outs then serves every task of the family: the dynamics do not
        depend on the task.

        Raises:
            ConfigError, DataError: As :meth:`reward`.
        """
        if record.env_id is not None and record.env_id != self.env_id:
            raise DataError(f"the roll-outs come from {record.env_id}, but family {self.name} runs on {self.env_id}")
        return dataclasses.replace(record, rews=self.reward(task, record.obs, record.acts, record.next_obs))


def angle_normalize(x: np.ndarray) -> np.ndarray:
    """Angles in radians wrapped into ``[-π, π)`` (Pendulum-v1's ``angle_normalize``)."""
    return ((x + np.pi) % (2 * np.pi)) - np.pi


class PendulumGoal(TaskFamily):
    """Pendulum-v1 with a goal angle: ``r = -(angle_normalize(θ - g)² + 0.1 θ̇² + 0.001 u²)``.

    Goals are ``n_tasks`` angles evenly spaced on ``[-π, π)`` (g = 0 is Pendulum-v1's own
    task); every ``held_out_every``-th one, starting from the second, is held out, so held-out
    goals lie between training goals.

    Args:
        n_tasks: Number of goal angles.
        held_out_every: Hold out every this-many-th task.
    """

    name = "pendulum-goal"
    env_id = "Pendulum-v1"
    param_names = ("goal",)
    observation_width = 3
    max_torque = 2.0

    def __init__(self, n_tasks: int = 12, held_out_every: int = 3) -> None:
        if n_tasks < 2 or held_out_every < 2:
            raise ConfigError(f"n_tasks {n_tasks}, held_out_every {held_out_every}: expected at least 2 each")
        self.n_tasks, self.held_out_every = n_tasks, held_out_every

    def _all_params(self) -> list[tuple[float, ...]]:
        return [(float(angle_normalize(np.float64(2 * np.pi * i / self.n_tasks))),) for i in range(self.n_tasks)]

    def _held_out(self, index: int) -> bool:
        return index % self.held_out_every == 1

    def _reward(self, params: np.ndarray, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        theta = np.arctan2(obs[:, 1], obs[:, 0])
        u = np.clip(acts[:, 0], -self.max_torque, self.max_torque)
        return -(angle_normalize(theta - params[0]) ** 2 + 0.1 * obs[:, 2] ** 2 + 0.001 * u**2)


class _HalfCheetah(TaskFamily):
    """HalfCheetah-v5 tasks rewarding the torso's x velocity ``next_obs[8]`` (see the module docstring)."""

    env_id = "HalfCheetah-v5"
    observation_width = 17
    velocity_index = 8
    ctrl_cost_weight = 0.1

    def velocity(self, next_obs: np.ndarray) -> np.ndarray:
        """The torso's x velocity ``qvel[0]`` in m/s after the step, ``(n,)``."""
        return next_obs[:, self.velocity_index]

    def ctrl_cost(self, acts: np.ndarray) -> np.ndarray:
        """``0.1 |a|²``, HalfCheetah-v5's control cost, ``(n,)``."""
        return self.ctrl_cost_weight * (acts**2).sum(axis=1)


class HalfCheetahVelocity(_HalfCheetah):
    """HalfCheetah-v5 with a target velocity v*: ``r = -|v - v*| - 0.1 |a|²`` (MAML, Finn et al. 2017).

    Targets are ``n_tasks`` velocities evenly spaced on ``[0, max_velocity]`` m/s (the MAML
    paper samples them uniformly on [0, 2]); every third, from the second, is held out.
    """

    name = "halfcheetah-velocity"
    param_names = ("velocity",)

    def __init__(self, n_tasks: int = 10, max_velocity: float = 2.0) -> None:
        if n_tasks < 2 or not max_velocity > 0:
            raise ConfigError(f"n_tasks {n_tasks}, max_velocity {max_velocity}: expected >= 2 tasks, velocity > 0")
        self.n_tasks, self.max_velocity = n_tasks, max_velocity

    def _all_params(self) -> list[tuple[float, ...]]:
        return [(float(v),) for v in np.linspace(0.0, self.max_velocity, self.n_tasks)]

    def _held_out(self, index: int) -> bool:
        return index % 3 == 1

    def _reward(self, params: np.ndarray, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return -np.abs(self.velocity(next_obs) - params[0]) - self.ctrl_cost(acts)


class HalfCheetahDirection(_HalfCheetah):
    """HalfCheetah-v5 forward (d = +1) or backward (d = -1): ``r = d v - 0.1 |a|²`` (MAML, Finn et al. 2017).

    Two tasks, both for training (``tasks("held-out")`` is empty): with two tasks there is
    nothing to hold out; use it for multi-task training and the velocity family for held-out tasks.
    """

    name = "halfcheetah-direction"
    param_names = ("direction",)

    def _all_params(self) -> list[tuple[float, ...]]:
        return [(1.0,), (-1.0,)]

    def _held_out(self, index: int) -> bool:
        return False

    def _reward(self, params: np.ndarray, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        return params[0] * self.velocity(next_obs) - self.ctrl_cost(acts)


#: Families by name (for ``--family`` options).
FAMILIES: dict[str, Callable[[], TaskFamily]] = {
    PendulumGoal.name: PendulumGoal,
    HalfCheetahVelocity.name: HalfCheetahVelocity,
    HalfCheetahDirection.name: HalfCheetahDirection,
}


def task_family(name: str) -> TaskFamily:
    """The family called ``name`` with its default tasks.

    Raises:
        ConfigError: Unknown name; the message lists the known ones.
    """
    if name not in FAMILIES:
        raise ConfigError(f"unknown task family {name!r}; expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]()


def task_params(tasks: Sequence[Task]) -> np.ndarray:
    """``(len(tasks), task_param_dim) float32``: each task's parameters, a row per task."""
    return np.asarray([t.params for t in tasks], dtype=np.float32)


def task_reward_wrapper(env: Any, family: TaskFamily, task: Task) -> Any:
    """Wrap a Gymnasium env of ``family.env_id`` so ``step`` returns ``task``'s reward (for PPO on a task).

    The environment's own reward is kept in ``info["env_reward"]``.

    Raises:
        ConfigError: The env is not ``family.env_id``.
    """
    import gymnasium as gym

    spec_id = getattr(env.unwrapped.spec, "id", None)
    if spec_id != family.env_id:
        raise ConfigError(f"family {family.name} runs on {family.env_id}, not {spec_id}")

    class TaskReward(gym.Wrapper):
        """Replaces the reward with the task's, computed from (obs, action, next obs)."""

        def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
            obs, info = self.env.reset(**kwargs)
            self._last_obs = obs
            return obs, info

        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
            obs, env_reward, terminated, truncated, info = self.env.step(action)
            reward = family.reward(task, self._last_obs[None], np.asarray(action)[None], obs[None])[0]
            self._last_obs = obs
            return obs, float(reward), terminated, truncated, {**info, "env_reward": env_reward}

    return TaskReward(env)


def task_preferences(
    family: TaskFamily,
    transitions: Transitions,
    tasks: Sequence[Task],
    *,
    num_pairs: int,
    fragment_length: int,
    gatherer: Any = None,
    seed: int = 0,
) -> list[tuple[Task, Any]]:
    """Labelled fragment pairs for each task, from one set of roll-outs relabelled per task.

    Args:
        family: The tasks' family.
        transitions: Roll-outs of ``family.env_id``.
        tasks: Tasks to label for.
        num_pairs: Pairs per task (fewer if the gatherer skips some).
        fragment_length: Steps per fragment.
        gatherer: Labels pairs from their true rewards (default: the perfect
            :class:`~rewardkit.rl.preferences.SyntheticGatherer`).
        seed: Task ``i``'s pairs are drawn with seed ``seed + task.index``.

    Returns:
        ``(task, PreferenceDataset)`` for each task, in order.
    """
    from rewardkit.rl.preferences import Fragmenter, SyntheticGatherer

    gatherer = gatherer if gatherer is not None else SyntheticGatherer(seed=seed)
    out = []
    for task in tasks:
        first, second = Fragmenter(seed + task.index)(transitions, fragment_length, num_pairs)
        out.append((task, gatherer(family.relabel(first, task), family.relabel(second, task))))
    return out
