"""The reward-model training loop, on ``accelerate``.

``accelerate launch -m rewardkit.cli.main train ...`` runs the same code on several
processes: the batch sampler is sharded and gradients are all-reduced by accelerate.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from rewardkit.data import PreferencePair, RatedExample
from rewardkit.errors import ModelError, RewardkitError
from rewardkit.models import TextRewardModel
from rewardkit.models.lora import add_lora
from rewardkit.models.shared_prefix import SharedPrefixRewardModel, supports_shared_prefix
from rewardkit.training.batching import (
    LengthGroupedBatches,
    PairCollator,
    RatedCollator,
    SharedPrefixCollator,
    _Indices,
    tokenize_pairs,
    tokenize_rated,
)
from rewardkit.training.config import RewardConfig
from rewardkit.training.curves import Curves
from rewardkit.training.freeze import freeze_parameters
from rewardkit.training.objectives import bradley_terry_loss, mse_loss, ranking_agreement

STATE_FILE = "trainer_state.json"


@dataclass
class TrainResult:
    """What one training run did.

    Attributes:
        model: The trained model, in eval mode.
        n_pairs: Training pairs used, all of them (none dropped); rated examples for ``--objective mse``.
        prompts_truncated: Pairs whose prompt was trimmed to fit ``max_length``.
        responses_truncated: Pairs whose response was trimmed.
        steps: Optimizer steps taken.
        seconds: Wall time of the optimisation loop, tokenization excluded.
        pairs_per_second: Training pairs processed per second of that loop.
        final_loss: Mean loss over the last logging window.
        final_accuracy: Mean training pairwise accuracy over the last logging window (for MSE the
            in-batch ranking agreement, :func:`~rewardkit.training.objectives.ranking_agreement`).
        curves: Logged loss and accuracy points.
        shared_prefix: Each pair was one row holding the prompt once (``config.shared_prefix``
            and a decoder that supports it); else chosen and rejected had rows of their own.
        objective: ``"bradley-terry"`` or ``"mse"``.
        rating_scale: ``(mean, std)`` of the training ratings when they were standardised
            (the model predicts ``(rating - mean) / std``); else None.
        frozen: Names of the parameters kept fixed (``config.freeze``).
    """

    model: TextRewardModel
    n_pairs: int
    prompts_truncated: int
    responses_truncated: int
    steps: int
    seconds: float
    pairs_per_second: float
    final_loss: float
    final_accuracy: float
    curves: Curves = field(repr=False)
    shared_prefix: bool = False
    objective: str = "bradley-terry"
    rating_scale: tuple[float, float] | None = None
    frozen: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat metrics for a commit (``train/...``)."""
        unit = "examples" if self.objective == "mse" else "pairs"
        return {
            f"train/{unit}": self.n_pairs,
            "train/prompts_truncated": self.prompts_truncated,
            "train/responses_truncated": self.responses_truncated,
            "train/steps": self.steps,
            "train/seconds": round(self.seconds, 2),
            f"train/{unit}_per_second": round(self.pairs_per_second, 3),
            "train/loss": round(self.final_loss, 5),
            "train/accuracy": round(self.final_accuracy, 5),
            "train/shared_prefix": int(self.shared_prefix),
        } | ({"train/frozen_parameters": len(self.frozen)} if self.frozen else {})


class RewardTrainer:
    """Trains a :class:`TextRewardModel` on preference pairs (Bradley-Terry) or rated examples (MSE).

    ``config.objective`` picks the loss (:mod:`rewardkit.training.objectives`); everything else,
    the loop, optimizer, schedule, checkpoints, is the same. Rated examples take one row each
    (:class:`~rewardkit.training.batching.RatedCollator`). ``config.freeze`` keeps the matching
    parameters fixed (:func:`~rewardkit.training.freeze.freeze_parameters`).

    Chosen and rejected texts share one forward pass: for decoders that support it each
    pair is one row holding the prompt once (``config.shared_prefix``,
    :mod:`rewardkit.models.shared_prefix`), otherwise chosen and rejected get rows of their
    own. Batches are padded only to their longest row and grouped by length; AdamW with
    linear warm-up and decay; gradient accumulation; bf16 autocast on request; checkpoints
    every ``save_steps`` that :meth:`train` can resume from. With ``config.lora_r`` the
    model gets a LoRA adapter (:func:`rewardkit.models.lora.add_lora`) and only the adapter
    and the head train; checkpoints then resume the same adapter.

    Args:
        config: Hyperparameters.
        model: The model to train; by default ``TextRewardModel.load(config.base_model)``.

    Raises:
        ConfigError: A LoRA target module names no linear layer of the model, or a freeze
            pattern matches no parameter.
    """

    def __init__(self, config: RewardConfig, model: TextRewardModel | None = None):
        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        set_seed(config.seed)  # before loading: the fresh head's init depends on it
        self.model = model if model is not None else TextRewardModel.load(config.base_model)
        if config.lora and self.model.peft_model is None:  # only the adapter and the head train
            add_lora(self.model, config.lora_r, config.lora_alpha, config.lora_target_modules, config.lora_dropout)
        # names as in model.safetensors (the backbone's), so patterns read like `show`/`diff` output
        self.frozen = freeze_parameters(self.model.backbone, config.freeze) if config.freeze else []
        limit = self.model.max_positions
        if limit is not None and config.max_length > limit:
            raise ModelError(f"max_length {config.max_length} is longer than the backbone's {limit} positions; "
                             f"use --max-length {limit} or less")
        # accelerate keeps mixed precision in a process-wide singleton and refuses a second,
        # different value; forget it (keeping the process group) so that one Python process
        # can train with and without bf16, as transformers' Trainer does.
        AcceleratorState._reset_state()
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision="bf16" if config.bf16 else "no",
        )

    def train(
        self,
        pairs: Sequence[PreferencePair] | Sequence[RatedExample],
        output_dir: str | Path,
        *,
        resume_from: str | Path | None = None,
        progress: bool = True,
    ) -> TrainResult:
        """Train on ``pairs`` and write curves (and checkpoints) under ``output_dir``.

        Args:
            pairs: Non-tie training pairs (``objective="bradley-terry"``) or rated examples
                (``objective="mse"``).
            output_dir: Run folder; gets ``curves.csv``, ``curves.png`` and ``checkpoints/``.
            resume_from: A checkpoint folder written by an earlier run with the same config
                and data; training continues from its step with identical batches.
            progress: Show progress bars.

        Raises:
            ValueError: ``pairs`` is empty or not the records the objective trains on.
            DataError: Standardised ratings that are all equal (no spread to scale by).
        """
        cfg, acc = self.config, self.accelerator
        if not pairs:
            raise ValueError("no training pairs")
        record_type = RatedExample if cfg.objective == "mse" else PreferencePair
        if not all(isinstance(record, record_type) for record in pairs):
            raise ValueError(f"objective {cfg.objective} trains on {record_type.__name__} records")
        state = self._checkpoint_state(Path(resume_from)) if resume_from is not None else None
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        show = progress and acc.is_local_main_process

        rating_scale = None
        if cfg.objective == "mse":
            ratings = [example.rating for example in pairs]
            if cfg.standardize_ratings:
                rating_scale = _rating_scale(ratings)
                ratings = [(r - rating_scale[0]) / rating_scale[1] for r in ratings]
            tokenized = tokenize_rated(self.model, pairs, cfg.max_length, ratings, progress=show)
            shared_prefix = False
            collator = RatedCollator(self.model, tokenized)
        else:
            tokenized = tokenize_pairs(self.model, pairs, cfg.max_length, progress=show)
            shared_prefix = cfg.shared_prefix and supports_shared_prefix(self.model.backbone)
            collator = (SharedPrefixCollator if shared_prefix else PairCollator)(self.model, tokenized)
        sampler = LengthGroupedBatches(collator.lengths(), cfg.batch_size, cfg.seed, cfg.group_by_length)
        # A generator of its own: starting an epoch must not draw from the global torch RNG
        # (dropout), or a run resumed mid-epoch would see different dropout masks.
        loader = torch.utils.data.DataLoader(
            _Indices(len(tokenized)), batch_sampler=sampler, collate_fn=collator,
            generator=torch.Generator(),
        )
        # Batches this process sees per epoch: accelerate shards the batch sampler over the
        # processes, each getting ceil(len / n) batches (even_batches, its default).
        n_proc = acc.num_processes
        batches_per_epoch = math.ceil(len(sampler) / n_proc)
        total_batches = max(1, math.ceil(batches_per_epoch * cfg.epochs))
        accum = cfg.gradient_accumulation_steps
        # Accumulation groups run across epoch boundaries; the last group may be partial.
        total_steps = max(1, math.ceil(total_batches / accum))

        if cfg.disable_dropout:
            for name, module in self.model.named_modules():
                if isinstance(module, torch.nn.Dropout) and ".lora_dropout." not in name:  # --lora-dropout stays
                    module.p = 0.0
                # Llama, Mistral and Qwen attention keep their dropout as a rate, not a layer
                if isinstance(getattr(module, "attention_dropout", None), float):
                    module.attention_dropout = 0.0
        optimizer = torch.optim.AdamW(
            _parameter_groups(self.model, cfg.weight_decay), lr=cfg.learning_rate, fused=True
        )
        from transformers import get_linear_schedule_with_warmup

        # A prepared scheduler is stepped once per process at every optimizer step.
        scheduler = get_linear_schedule_with_warmup(
            optimizer, round(cfg.warmup_ratio * total_steps) * n_proc, total_steps * n_proc
        )
        # The shared-prefix module holds the same backbone (same parameters, same state_dict
        # keys), so training it trains self.model and checkpoints are interchangeable.
        module = SharedPrefixRewardModel(self.model) if shared_prefix else self.model
        model, optimizer, loader, scheduler = acc.prepare(module, optimizer, loader, scheduler)

        curves = Curves(loss_label="MSE loss" if cfg.objective == "mse" else "Bradley-Terry loss")
        done_batches = 0
        window_loss, window_acc, window_n = 0.0, 0.0, 0
        if resume_from is not None:
            acc.load_state(str(resume_from))
            done_batches = state["batches"]
            curves = Curves.from_rows(state["curves"], curves.loss_label)
            window_loss, window_acc, window_n = state.get("window", (0.0, 0.0, 0))

        model.train()
        bar = tqdm(total=total_batches, initial=done_batches, desc="training", unit="batch", disable=not show)
        pairs_seen = 0
        start = time.perf_counter()
        batch_index = done_batches
        while batch_index < total_batches:
            epoch, offset = divmod(batch_index, batches_per_epoch)
            # The prepared loader re-applies its own epoch counter when iterated (which
            # starts at 0 in a resumed run), so set it there as well as on the sampler.
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
            sampler.set_epoch(epoch)
            epoch_loader = acc.skip_first_batches(loader, offset) if offset else loader
            for batch in epoch_loader:
                # Sync every `accum` batches counted over the whole run and on the last batch,
                # as total_steps assumes (accelerate's accumulate() would also sync at every
                # epoch end and skip a partial last group).
                sync = (batch_index + 1) % accum == 0 or batch_index + 1 == total_batches
                with contextlib.nullcontext() if sync else acc.no_sync(model):
                    loss, accuracy = self._step(model, batch)
                    acc.backward(loss)
                if sync:
                    if cfg.max_grad_norm:
                        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                batch_index += 1
                pairs_seen += len(batch["rating" if "rating" in batch else "margin"]) * acc.num_processes
                window_loss += loss.item()
                window_acc += accuracy
                window_n += 1
                bar.update(1)
                step = math.ceil(batch_index / accum)
                if sync and (step % cfg.logging_steps == 0 or batch_index == total_batches):
                    curves.add(step, batch_index / batches_per_epoch, window_loss / window_n,
                               window_acc / window_n, scheduler.get_last_lr()[0])
                    bar.set_postfix(loss=f"{window_loss / window_n:.4f}", acc=f"{window_acc / window_n:.3f}")
                    window_loss, window_acc, window_n = 0.0, 0.0, 0
                if sync and cfg.save_steps and step % cfg.save_steps == 0:
                    self._checkpoint(output_dir / "checkpoints" / f"step-{step}", batch_index, curves,
                                     (window_loss, window_acc, window_n))
                if batch_index >= total_batches:
                    break
        bar.close()
        seconds = time.perf_counter() - start

        acc.wait_for_everyone()
        acc.unwrap_model(model, keep_fp32_wrapper=False)  # later scoring runs in float32
        trained = self.model
        trained.eval()
        if acc.is_main_process:
            curves.write(output_dir)
        last = curves.rows[-1] if curves.rows else {"loss": float("nan"), "accuracy": float("nan")}
        return TrainResult(
            model=trained,
            n_pairs=len(tokenized),
            prompts_truncated=tokenized.prompts_truncated,
            responses_truncated=tokenized.responses_truncated,
            steps=total_steps,
            seconds=seconds,
            pairs_per_second=pairs_seen / seconds if seconds > 0 else float("nan"),
            final_loss=last["loss"],
            final_accuracy=last["accuracy"],
            curves=curves,
            shared_prefix=shared_prefix,
            objective=cfg.objective,
            rating_scale=rating_scale,
            frozen=self.frozen,
        )

    def _step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, float]:
        """Loss and accuracy of one batch, from any collator.

        A :class:`RatedCollator` batch (it has ``rating``) gets the MSE loss and the in-batch
        ranking agreement. A :class:`SharedPrefixCollator` batch (it has ``chosen_index``) goes to a
        :class:`SharedPrefixRewardModel`, which returns chosen and rejected rewards; a
        :class:`PairCollator` batch has chosen rows first and rejected rows second.
        """
        if "rating" in batch:
            rewards = model(batch["input_ids"], batch["attention_mask"]).float()
            return mse_loss(rewards, batch["rating"]), ranking_agreement(rewards, batch["rating"])
        if "chosen_index" in batch:
            chosen, rejected = model(batch["input_ids"], batch["attention_mask"], batch["position_ids"],
                                     batch["chosen_index"], batch["rejected_index"])
        else:
            chosen, rejected = model(batch["input_ids"], batch["attention_mask"]).float().chunk(2)
        margin = batch["margin"] if self.config.use_margin else None
        loss = bradley_terry_loss(chosen, rejected, margin, self.config.center_rewards_coefficient)
        accuracy = ((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean().item()
        return loss, accuracy

    def _checkpoint_state(self, folder: Path) -> dict:
        """Our counters from a checkpoint folder, after checking it belongs to this configuration.

        Raises:
            RewardkitError: The folder is not a checkpoint, or was written with other settings.
        """
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise RewardkitError(f"{folder} is not a rewardkit checkpoint (no readable {STATE_FILE}); "
                                 "give a checkpoints/step-N folder of an earlier run") from exc
        free = {"logging_steps", "save_steps", "num_threads"}  # may change between the runs
        ours = self.config.to_dict()
        changed = sorted(k for k, v in state.get("config", {}).items() if k not in free and ours.get(k) != v)
        if changed:
            raise RewardkitError(f"{folder} was written with other settings ({', '.join(changed)}); "
                                 "resume with the same configuration and data")
        return state

    def _checkpoint(
        self, folder: Path, batches: int, curves: Curves, window: tuple[float, float, int]
    ) -> None:
        """Save model, optimizer, scheduler and RNG state (accelerate) plus our own counters.

        ``window`` is the running (loss sum, accuracy sum, batches) of the unfinished logging
        window, so a resumed run logs the same curve points.
        """
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            state = {"batches": batches, "curves": curves.rows, "window": list(window),
                     "config": self.config.to_dict()}
            (folder / STATE_FILE).write_text(json.dumps(state, indent=1))


def _rating_scale(ratings: Sequence[float]) -> tuple[float, float]:
    """``(mean, std)`` of the training ratings (population std), for standardising them.

    Raises:
        DataError: All ratings are equal, so there is no spread to scale by.
    """
    from rewardkit.errors import DataError

    mean = math.fsum(ratings) / len(ratings)
    std = math.sqrt(math.fsum((r - mean) ** 2 for r in ratings) / len(ratings))
    if std == 0:
        raise DataError(f"every training rating is {mean}; --standardize-ratings needs ratings that differ")
    return mean, std


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only; biases and normalisation weights (1-D) are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
