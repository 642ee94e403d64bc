"""Every training hyperparameter in one dataclass, stored with the commit (TRL's ``RewardConfig``)."""

from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields
from numbers import Integral, Real
from os import PathLike
from typing import Any

from rewardkit.data.split import check_fractions
from rewardkit.errors import ConfigError, DataError

OBJECTIVES = ("bradley-terry", "mse")
"""Training objectives of :class:`RewardConfig`: Bradley-Terry on pairs, MSE regression on ratings."""


def _f(default: Any, help: str, *, flag: str | None = None, cli: bool = True) -> Any:  # noqa: A002
    """A field with its help text and CLI flag (``--name-with-dashes`` unless ``flag`` says)."""
    return field(default=default, metadata={"help": help, "flag": flag, "cli": cli})


@dataclass
class RewardConfig:
    """Hyperparameters of :class:`rewardkit.training.RewardTrainer`.

    Each field's ``help`` is also the CLI flag's help text, so they never disagree.
    """

    base_model: str | None = _f(
        None,
        "Model to start from: a folder, a ref of the repository (a stored version; a folder of that name wins), "
        "or a hub id; default: the offline all-MiniLM-L6-v2.",
    )
    objective: str = _f(
        "bradley-terry",
        "Training objective: bradley-terry (preference pairs: chosen/rejected) or mse (rated examples: "
        "prompt/response/rating; regression of the reward on the rating).",
    )
    standardize_ratings: bool = _f(
        False,
        "--objective mse: regress on the ratings' z-scores (training mean and std, stored in the commit) "
        "instead of the raw ratings.",
    )
    init_from: str | None = _f(
        None,
        "Transfer: start from this stored version (a ref of the repository: branch, tag, alias, commit); the "
        "commit records it as its base (lineage). Unlike --base-model it never falls back to a folder or hub id.",
    )
    freeze: tuple[str, ...] | None = _f(
        None,
        "Keep the parameters whose names match this fnmatch pattern fixed (repeat for several), e.g. "
        "'bert.embeddings.*'; names as in model.safetensors (see `rewardkit show`).",
    )
    max_length: int = _f(
        256,
        "Tokens per text (prompt + response). Longer pairs are kept: the prompt is trimmed from the left, "
        "then the response from the right.",
    )
    epochs: float = _f(1.0, "Passes over the training pairs (fractions allowed).")
    batch_size: int = _f(8, "Pairs per forward pass (chosen and rejected go together, so 2x texts).")
    gradient_accumulation_steps: int = _f(1, "Forward passes per optimizer step.", flag="--grad-accum")
    learning_rate: float = _f(5e-5, "Peak AdamW learning rate.", flag="--lr")
    weight_decay: float = _f(0.01, "AdamW weight decay.")
    warmup_ratio: float = _f(0.1, "Fraction of optimizer steps with linear warm-up; linear decay after.")
    max_grad_norm: float = _f(1.0, "Gradient clipping norm (0 disables).")
    center_rewards_coefficient: float | None = _f(
        None,
        "Weight of the reward-centering term mean((r_chosen + r_rejected)^2) (Eisenstein et al. 2023); "
        "off when unset.",
        flag="--center-rewards",
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
        (0.8, 0.1, 0.1), "Train/validation/test fractions, split per source by prompt group.", cli=False
    )
    limit: int | None = _f(None, "Use at most this many training pairs per source (the first N after the split).")
    logging_steps: int = _f(10, "Optimizer steps between logged points of the loss/accuracy curves.")
    save_steps: int | None = _f(None, "Write a resumable checkpoint every N optimizer steps.")
    num_threads: int | None = _f(None, "torch CPU threads; default: torch's choice.", flag="--threads")
    lora_r: int | None = _f(
        None,
        "Train a LoRA adapter of this rank (peft) instead of every weight; the score head stays fully trainable. "
        "Off when unset or 0.",
    )
    lora_alpha: float | None = _f(None, "LoRA scaling numerator (delta = alpha/r * B A); default: 2 x --lora-r.")
    lora_target_modules: tuple[str, ...] | None = _f(
        None,
        "Module names that get LoRA (repeat for several), e.g. query, value (BERT) or q_proj, v_proj (Llama, Qwen); "
        "default: peft's choice for the model family.",
        flag="--lora-target",
    )
    lora_dropout: float = _f(0.0, "Dropout on the LoRA input, in [0, 1); kept when --disable-dropout turns the "
                                  "model's own dropout off.")

    def __post_init__(self) -> None:
        """Validate every field at the boundary, before any data or weights load.

        Every number must be finite (``inf`` and ``nan`` are refused) and inside its range;
        the message names the field, its CLI flag, the range and the value, on one line.

        Raises:
            ConfigError: A value of the wrong type or outside its range.
        """
        for name in ("batch_size", "gradient_accumulation_steps", "logging_steps"):
            self._check_int(name, 1)
        for name in ("limit", "save_steps", "num_threads"):
            if getattr(self, name) is not None:
                self._check_int(name, 1)
        self._check_int("max_length", 4, why=" (room for special tokens)")
        self._check_int("seed", 0, 2**32 - 1)
        self._check_float("epochs", 0, above=True)
        self._check_float("learning_rate", 0, above=True)
        self._check_float("weight_decay", 0)
        self._check_float("warmup_ratio", 0, 1)
        self._check_float("max_grad_norm", 0, why=" (0 disables clipping)")
        if self.center_rewards_coefficient is not None:
            self._check_float("center_rewards_coefficient", 0)
        self._check_lora()
        self._check_transfer()
        for name in (f.name for f in fields(self) if isinstance(f.default, bool)):  # every switch
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{self._label(name)} must be true or false, got {getattr(self, name)!r}")
        if self.base_model is not None and not isinstance(self.base_model, str | PathLike):
            raise ConfigError(f"{self._label('base_model')} must be a folder, ref or hub id, got {self.base_model!r}")
        try:
            check_fractions(self.split)
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        if self.split[0] <= 0:
            raise ConfigError(f"split needs a training share above 0, got {tuple(self.split)}")

    @property
    def lora(self) -> bool:
        """Whether a LoRA adapter is trained (``lora_r`` set and not 0)."""
        return bool(self.lora_r)

    def _check_lora(self) -> None:
        """Validate the LoRA fields; ``lora_alpha``, targets and dropout need ``lora_r``."""
        if self.lora_r is not None:
            self._check_int("lora_r", 0, why=" (0 turns LoRA off)")
        if self.lora_alpha is not None:
            self._check_float("lora_alpha", 0, above=True)
        self._check_float("lora_dropout", 0)
        if self.lora_dropout >= 1:
            raise ConfigError(f"{self._label('lora_dropout')} must be a finite number in [0, 1), "
                              f"got {self.lora_dropout!r}")
        targets = self.lora_target_modules
        if targets is not None:
            if isinstance(targets, str) or not all(isinstance(t, str) and t.strip() for t in targets) \
                    or not targets:
                raise ConfigError(f"{self._label('lora_target_modules')} must be one or more module names, "
                                  f"e.g. query, got {targets!r}")
            self.lora_target_modules = tuple(targets)
        if not self.lora:
            given = [self._label(n) for n in ("lora_alpha", "lora_target_modules")
                     if getattr(self, n) is not None] + ([self._label("lora_dropout")] if self.lora_dropout else [])
            if given:
                raise ConfigError(f"{', '.join(given)} need a LoRA rank: add --lora-r R (R >= 1)")

    def _check_transfer(self) -> None:
        """Validate the objective, ``init_from`` and ``freeze``.

        Raises:
            ConfigError: An unknown objective, ``--standardize-ratings`` without MSE, both
                ``--init-from`` and ``--base-model``, an empty freeze pattern, or freeze with LoRA
                (LoRA already freezes every backbone weight).
        """
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"{self._label('objective')} must be one of {', '.join(OBJECTIVES)}, "
                              f"got {self.objective!r}")
        if self.standardize_ratings and self.objective != "mse":
            raise ConfigError(f"{self._label('standardize_ratings')} needs --objective mse")
        if self.init_from is not None:
            if not isinstance(self.init_from, str) or not self.init_from.strip():
                raise ConfigError(f"{self._label('init_from')} must name a stored version, got {self.init_from!r}")
            if self.base_model is not None:
                raise ConfigError(f"give either {self._label('init_from')} (a stored version) or "
                                  f"{self._label('base_model')}, not both")
        patterns = self.freeze
        if patterns is not None:
            if isinstance(patterns, str) or not patterns or \
                    not all(isinstance(p, str) and p.strip() for p in patterns):
                raise ConfigError(f"{self._label('freeze')} must be one or more parameter-name patterns, "
                                  f"e.g. 'bert.embeddings.*', got {patterns!r}")
            self.freeze = tuple(patterns)
            if self.lora:
                raise ConfigError(f"{self._label('freeze')} and --lora-r do not combine: LoRA already keeps every "
                                  "backbone weight fixed; drop one of them")

    def _check_int(self, name: str, low: int, high: int | None = None, why: str = "") -> None:
        value = getattr(self, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, Integral)
            or value < low
            or (high is not None and value > high)
        ):
            expected = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"{self._label(name)} must be a whole number {expected}{why}, got {value!r}")

    def _check_float(self, name: str, low: float, high: float | None = None, *, above: bool = False,
                     why: str = "") -> None:
        value = getattr(self, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, Real)
            or not math.isfinite(value)
            or (value <= low if above else value < low)
            or (high is not None and value > high)
        ):
            expected = f"in [{low}, {high}]" if high is not None else f"{'>' if above else '>='} {low}"
            raise ConfigError(f"{self._label(name)} must be a finite number {expected}{why}, got {value!r}")

    @staticmethod
    def _label(name: str) -> str:
        """``learning_rate (--lr)``: the field and, if it has one, its CLI flag."""
        flag = RewardConfig.flag(name)
        return f"{name} ({flag})" if flag else name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RewardConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old commits stay readable."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        for name in ("split", "lora_target_modules", "freeze"):
            if kwargs.get(name) is not None:
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    @staticmethod
    def help(name: str) -> str:
        """Help text of one field."""
        return _field(name).metadata["help"]

    @staticmethod
    def flag(name: str) -> str | None:
        """CLI flag of one field (``--lr`` for ``learning_rate``), or None if it has none."""
        metadata = _field(name).metadata
        if not metadata["cli"]:
            return None
        return metadata["flag"] or "--" + name.replace("_", "-")


def _field(name: str) -> Field:
    return next(f for f in fields(RewardConfig) if f.name == name)
