"""State-action reward model: an MLP over (s, a) or (s, a, s') giving one reward per transition.

The reward network of Christiano et al. 2017 ("Deep Reinforcement Learning from Human
Preferences") and imitation's ``BasicRewardNet``: observations are normalised with running
statistics (:mod:`rewardkit.models.normalization`), discrete actions are one-hot encoded
and continuous ones flattened (:mod:`rewardkit.models.spaces`), the pieces are
concatenated and an MLP maps them to a scalar. Optionally the next observation is an
input too, for rewards R(s, a, s').

The model saves as ``config.json`` (``"model_type": "rewardkit-state-action"``) and
``model.safetensors`` holding the weights and the buffers ``obs_norm.{mean,var,count}``
and ``reward_norm.{mean,var,count}``, so normalisation is versioned with the model.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rewardkit.errors import ModelError
from rewardkit.models.folder import load_weights, read_config, save_model_folder
from rewardkit.models.normalization import RunningNormalizer
from rewardkit.models.spaces import (
    ACTION_KINDS,
    action_encoding,
    as_tensor,
    encode_actions,
    flatten_observations,
    observation_dim,
)

#: Activations by their config name.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU,
}
#: Rows per forward pass in :meth:`StateActionRewardModel.score`.
SCORE_BATCH = 65_536


@dataclass
class StateActionConfig:
    """Shape of a state-action reward model.

    Attributes:
        obs_dim: Width of a flattened observation (``prod(observation_space.shape)``).
        action_kind: ``"discrete"`` (one-hot actions) or ``"continuous"`` (flattened ``Box``).
        action_dim: Number of actions (discrete) or flat width of an action (continuous).
        use_next_obs: Also take the next observation: R(s, a, s').
        hidden_sizes: Widths of the hidden layers.
        activation: One of :data:`ACTIVATIONS`.
        zero_after_termination: The model was fitted where ending an episode is worth 0:
            preferences between fragments padded with zero-reward absorbing steps after a
            termination (:class:`~rewardkit.rl.preferences.Fragmenter` with ``absorbing=True``),
            or MSE on the true rewards of roll-outs that terminate. Its level then carries
            meaning, and PPO's reward normalisation only scales it
            (:class:`~rewardkit.rl.wrapper.LearnedRewardVecEnvWrapper`), never shifts it.
    """

    obs_dim: int
    action_kind: str
    action_dim: int
    use_next_obs: bool = False
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    zero_after_termination: bool = False

    def __post_init__(self) -> None:
        """Check the values (a config read from a file passes through here too).

        Raises:
            ModelError: A field is out of range; the message names it.
        """
        self.hidden_sizes = tuple(self.hidden_sizes)
        for name in ("obs_dim", "action_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ModelError(f"config field {name} is {value!r}; expected a positive integer")
        if self.action_kind not in ACTION_KINDS:
            raise ModelError(f"config field action_kind is {self.action_kind!r}; expected one of "
                             f"{', '.join(ACTION_KINDS)}")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in self.hidden_sizes):
            raise ModelError(f"config field hidden_sizes is {self.hidden_sizes!r}; expected positive integers")
        if self.activation not in ACTIVATIONS:
            raise ModelError(f"config field activation is {self.activation!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        for name in ("use_next_obs", "zero_after_termination"):
            if not isinstance(getattr(self, name), bool):
                raise ModelError(f"config field {name} is {getattr(self, name)!r}; expected true or false")

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (``hidden_sizes`` as a list)."""
        fields = dataclasses.asdict(self)
        fields["hidden_sizes"] = list(self.hidden_sizes)
        return fields

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> StateActionConfig:
        """Build from :meth:`to_dict`'s output; keys other than the fields (``model_type``) are ignored.

        Raises:
            ModelError: A required field is missing or a value is out of range; names ``source``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise ModelError(f"{source}: field {missing[0]} is missing; save the model again")
        try:
            return cls(**{k: v for k, v in values.items() if k in names})
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None


def mark_zero_after_termination(model: nn.Module) -> None:
    """Set ``config.zero_after_termination`` on ``model`` (on every member of an ensemble).

    For a model fitted where ending an episode is worth 0: MSE on the true rewards of
    roll-outs that terminate, or preferences between fragments with absorbing padding.
    """
    for member in getattr(model, "members", [model]):
        member.config.zero_after_termination = True


def build_mlp(in_dim: int, hidden_sizes: tuple[int, ...], activation: str) -> nn.Sequential:
    """``Linear -> act`` per hidden size, then ``Linear(…, 1)``: ``(batch, in_dim) -> (batch, 1)``."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class StateActionRewardModel(nn.Module):
    """R_θ(s, a) or R_θ(s, a, s'): normalised observations, encoded actions, an MLP.

    Args:
        config: The model's shape.

    Attributes:
        obs_norm: Running observation statistics, applied to ``obs`` and ``next_obs`` in
            :meth:`forward`; updated only by :meth:`update_obs_normalizer`.
        reward_norm: Running statistics of rewards, for an RL wrapper that scales the
            learned reward (as ``VecNormalize`` does); :meth:`forward` does not apply them.
        mlp: ``(batch, input_dim) -> (batch, 1)``.
    """

    model_type: ClassVar[str] = "rewardkit-state-action"
    config_class: ClassVar[type[StateActionConfig]] = StateActionConfig

    def __init__(self, config: StateActionConfig) -> None:
        super().__init__()
        self.config = config
        self.obs_norm = RunningNormalizer((config.obs_dim,))
        self.reward_norm = RunningNormalizer(())
        self.mlp = build_mlp(self.input_dim, config.hidden_sizes, config.activation)

    @classmethod
    def for_spaces(cls, observation_space: Any, action_space: Any, **kw: Any) -> StateActionRewardModel:
        """A model for a Gymnasium environment's spaces (``Box`` observations; ``Discrete`` or ``Box`` actions).

        Args:
            observation_space: ``env.observation_space`` (a ``Box``).
            action_space: ``env.action_space`` (``Discrete`` or ``Box``).
            **kw: Further :class:`StateActionConfig` fields (``use_next_obs``, ``hidden_sizes``…).

        Raises:
            ModelError: A space is not supported.
        """
        kind, action_dim = action_encoding(action_space)
        return cls(cls.config_class(obs_dim=observation_dim(observation_space), action_kind=kind,
                                    action_dim=action_dim, **kw))

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        """Refuse an environment whose spaces this model cannot score (before any roll-out).

        Raises:
            ModelError: Names the environment's space and what the model was built for.
        """
        c = self.config
        obs_dim = observation_dim(observation_space)
        if obs_dim != c.obs_dim:
            raise ModelError(f"the environment's observation space {observation_space} has {obs_dim} values, but "
                             f"the reward model takes {c.obs_dim}: it was trained on another environment")
        kind, action_dim = action_encoding(action_space)
        if (kind, action_dim) != (c.action_kind, c.action_dim):
            raise ModelError(f"the environment's action space {action_space} is {kind} with {action_dim} "
                             f"{'actions' if kind == 'discrete' else 'values'}, but the reward model takes "
                             f"{c.action_kind} actions of width {c.action_dim}: it was trained on another environment")

    @property
    def input_dim(self) -> int:
        """Width of the MLP's input: observation, encoded action, next observation if used."""
        c = self.config
        return c.obs_dim * (2 if c.use_next_obs else 1) + c.action_dim

    # ------------------------------------------------------------------ forward
    def features(self, obs: torch.Tensor, acts: torch.Tensor, next_obs: torch.Tensor | None = None) -> torch.Tensor:
        """The MLP's input ``(batch, input_dim) float32``: [norm(s), enc(a), norm(s')?].

        Args:
            obs: ``(batch, *obs_shape) float`` with ``obs_dim`` values per row.
            acts: ``(batch,)`` int (discrete) or ``(batch, *act_shape)`` float (continuous).
            next_obs: Like ``obs``; required when ``config.use_next_obs``, else ignored.

        Raises:
            ModelError: Shapes do not fit the config, the batch sizes differ, or ``next_obs``
                is missing where needed.
        """
        c = self.config
        parts = [self.obs_norm(flatten_observations(obs, c.obs_dim)), encode_actions(acts, c.action_kind, c.action_dim)]
        if c.use_next_obs:
            if next_obs is None:
                raise ModelError("this reward model takes (obs, acts, next_obs): next_obs is missing")
            parts.append(self.obs_norm(flatten_observations(next_obs, c.obs_dim, name="next_obs")))
        sizes = {p.shape[0] for p in parts}
        if len(sizes) > 1:
            raise ModelError(f"obs, acts{', next_obs' if c.use_next_obs else ''} have different batch sizes "
                             f"{[p.shape[0] for p in parts]}; pass one row per transition in each")
        return torch.cat(parts, dim=1)

    def forward(self, obs: torch.Tensor, acts: torch.Tensor, next_obs: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards ``(batch,) float32`` of transitions (see :meth:`features` for the inputs)."""
        return self.mlp(self.features(obs, acts, next_obs)).squeeze(-1)

    def update_obs_normalizer(self, obs: torch.Tensor | np.ndarray) -> None:
        """Fold observations ``(n, *obs_shape)`` into :attr:`obs_norm` (call before training, not during).

        Raises:
            ModelError: Shape does not fit the config. DataError: NaN or inf.
        """
        self.obs_norm.update(flatten_observations(as_tensor("obs", obs), self.config.obs_dim))

    # ------------------------------------------------------------------ scoring
    def score(self, obs: Any, acts: Any, next_obs: Any = None) -> np.ndarray:
        """Rewards of transitions, numpy in and out, without gradients, in eval mode.

        Args:
            obs: ``(n, *obs_shape)`` array.
            acts: ``(n,)`` integer (discrete) or ``(n, *act_shape)`` float (continuous) array.
            next_obs: ``(n, *obs_shape)`` array; needed when ``config.use_next_obs``.

        Returns:
            ``(n,) float32`` rewards.

        Raises:
            DataError: An input holds NaN or inf (names the input and row).
            ModelError: Shapes do not fit the model.
        """
        return self._score(obs=obs, acts=acts, next_obs=next_obs)

    @torch.no_grad()
    def _score(self, **inputs: Any) -> np.ndarray:
        """Run :meth:`forward` on numpy inputs in chunks of :data:`SCORE_BATCH` rows."""
        device = next(self.parameters()).device
        tensors = {k: as_tensor(k, v, device) for k, v in inputs.items() if v is not None}
        n = tensors["obs"].shape[0] if tensors["obs"].dim() else 0
        was_training = self.training
        self.eval()
        try:
            out = [self(**{k: t[i : i + SCORE_BATCH] for k, t in tensors.items()}).float().cpu()
                   for i in range(0, max(n, 1), SCORE_BATCH)]
        finally:
            self.train(was_training)
        return torch.cat(out).numpy()

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` (``model_type`` + config fields) and ``model.safetensors`` to ``folder``."""
        return save_model_folder(folder, {"model_type": self.model_type, **self.config.to_dict()}, self)

    @classmethod
    def from_config_dict(cls, config: dict[str, Any], source: str = "config") -> StateActionRewardModel:
        """A fresh model from a ``config.json`` dict (no weights)."""
        return cls(cls.config_class.from_dict(config, source))

    @classmethod
    def load(cls, folder: str | os.PathLike) -> StateActionRewardModel:
        """Load a folder :meth:`save` wrote (weights and normalisation buffers, bit for bit).

        Raises:
            ModelError: Files missing or damaged, or the folder holds another kind of model.
        """
        config = read_config(folder)
        source = str(Path(folder) / "config.json")
        if config.get("model_type") != cls.model_type:
            raise ModelError(f"{source}: model_type is {config.get('model_type')!r}, not {cls.model_type!r}; "
                             "load it with rewardkit.models.load_reward_model")
        return load_weights(cls.from_config_dict(config, source), folder)
