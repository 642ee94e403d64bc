"""Every training hyperparameter in one dataclass, stored with the commit (TRL's ``RewardConfig``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rewardkit.data.split import check_fractions
from rewardkit.errors import ConfigError, DataError


def _f(default: Any, help: str) -> Any:  # noqa: A002 (the field's help text)
    return field(default=default, metadata={"help": help})


@dataclass
class RewardConfig:
    """Hyperparameters of :class:`rewardkit.training.RewardTrainer`.

    Each field's ``help`` is also the CLI flag's help text, so they never disagree.
    """

    base_model: str | None = _f(None, "Backbone folder or hub id; default: the offline all-MiniLM-L6-v2.")
    max_length: int = _f(
        256,
        "Tokens per text (prompt + response). Longer pairs are kept: the prompt is trimmed from the left, "
        "then the response from the right.",
    )
    epochs: float = _f(1.0, "Passes over the training pairs (fractions allowed).")
    batch_size: int = _f(8, "Pairs per forward pass (chosen and rejected go together, so 2x texts).")
    gradient_accumulation_steps: int = _f(1, "Forward passes per optimizer step.")
    learning_rate: float = _f(5e-5, "Peak AdamW learning rate.")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    warmup_ratio: float = _f(0.1, "Fraction of optimizer steps with linear warm-up; linear decay after.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).")
    center_rewards_coefficient: float | None = _f(
        None,
        "Weight of the reward-centering term mean((r_chosen + r_rejected)^2) (Eisenstein et al. 2023); "
        "off when unset.",
    )
    use_margin: bool = _f(True, "Subtract the records' margin inside the Bradley-Terry loss when they have one.")
    disable_dropout: bool = _f(True, "Turn every dropout layer off while training, as TRL's RewardTrainer does.")
    group_by_length: bool = _f(True, "Batch pairs of similar length together so little compute goes to padding.")
    shared_prefix: bool = _f(
        True,
        "Decoders (Llama, Mistral, Qwen2/3, GPT-2): put each pair in one row, prompt then chosen then rejected, "
        "with an attention mask that keeps the two responses apart, so the prompt is computed once; same "
        "rewards and gradients as two rows. Other backbones always use two rows.",
    )
    bf16: bool = _f(False, "bf16 autocast for forward and backward (CPU or GPU); weights stay float32.")
    seed: int = _f(42, "Seed for the split, the initial head, dropout and batch order.")
    split: tuple[float, float, float] = _f(
        (0.8, 0.1, 0.1), "Train/validation/test fractions, split per source by prompt group."
    )
    limit: int | None = _f(None, "Use at most this many training pairs per source (the first N after the split).")
    logging_steps: int = _f(10, "Optimizer steps between logged points of the loss/accuracy curves.")
    save_steps: int | None = _f(None, "Write a resumable checkpoint every N optimizer steps.")
    num_threads: int | None = _f(None, "torch CPU threads; default: torch's choice.")

    def __post_init__(self) -> None:
        """Validate at the boundary, naming the field and the fix.

        Raises:
            ConfigError: A value outside its range.
        """
        at_least_one = ["batch_size", "gradient_accumulation_steps", "logging_steps", "limit", "save_steps",
                        "num_threads"]
        for name in at_least_one:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.max_length < 4:
            raise ConfigError(f"max_length must be at least 4 tokens (room for special tokens), got {self.max_length}")
        if not self.epochs > 0:
            raise ConfigError(f"epochs must be more than 0, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be more than 0, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ConfigError(f"warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("weight_decay and max_grad_norm must not be negative")
        try:
            check_fractions(self.split)
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        if self.split[0] <= 0:
            raise ConfigError(f"split needs a training share above 0, got {tuple(self.split)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RewardConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old commits stay readable."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        if "split" in kwargs:
            kwargs["split"] = tuple(kwargs["split"])
        return cls(**kwargs)

    @staticmethod
    def help(name: str) -> str:
        """Help text of one field."""
        return next(f.metadata["help"] for f in fields(RewardConfig) if f.name == name)
