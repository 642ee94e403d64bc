"""Shared-prefix pair encoding for decoder reward models: one row per preference pair.

A decoder reads the reward of ``prompt + response`` at the last real token, and the two
texts of a pair start with the same prompt. Instead of running the prompt twice (one row
for ``prompt + chosen``, one for ``prompt + rejected``), a pair becomes one row

    ``[shared; chosen rest; rejected rest]``

with position ids ``0..S-1, S..S+C-1, S..S+R-1`` (they restart after the shared part) and
a 4-D attention mask under which the shared tokens are causal, each chosen token sees the
shared tokens and the chosen tokens before it, and each rejected token sees the shared
tokens and the rejected tokens before it, never the chosen ones (prefix sharing, Wang et
al. 2024, "Accelerating Direct Preference Optimization with Prefix Sharing",
arXiv:2410.20305). Every token then sees exactly the tokens and positions it sees in its
own row, so rewards and gradients equal the two-row forward of the same token ids.

**What is shared.** The texts are encoded exactly as for two rows
(:meth:`TextRewardModel.encode`, one tokenization of ``prompt + response``); the shared
part is the *longest common token prefix* of the two id lists. It is usually the prompt;
it is shorter when a token straddles the prompt/response boundary differently (a BPE
merge) and longer when the responses start alike. A pair whose texts share no more than
the tokenizer's special prefix (e.g. ``<s>``) — no prompt, or a prompt that the truncation
policy trimmed differently for the two responses — goes as two plain causal rows, as in
the two-row path, because one row would only make the batch wider.

Only architectures whose attention honours a custom 4-D mask and whose positions come
only from ``position_ids`` are packed (see :func:`supports_shared_prefix`); the rest
(encoders, sliding-window or flash attention, other decoders) use two rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rewardkit.models.text import TextRewardModel

# Decoders checked to give the two-row rewards and gradients (tests/models/test_models_shared_prefix.py):
# their body passes a 4-D mask through ``masking_utils`` unchanged and takes positions from
# ``position_ids`` (rotary for Llama/Mistral/Qwen, learned ``wpe`` for GPT-2).
SHARED_PREFIX_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gpt2"})
# Attention paths that take an arbitrary mask: eager adds a float mask, sdpa takes a bool one.
_MASKED_ATTENTION = frozenset({"eager", "sdpa"})

# Segment labels of a packed row.
_PAD, _SHARED, _CHOSEN, _REJECTED = -1, 0, 1, 2


def supports_shared_prefix(backbone: nn.Module) -> bool:
    """Whether ``backbone`` (a ``*ForSequenceClassification``) can score a pair in one row exactly.

    True for the decoders of :data:`SHARED_PREFIX_MODEL_TYPES` with eager or sdpa attention,
    full attention in every layer (no sliding window) and a ``score`` head.
    """
    config = getattr(backbone, "config", None)
    if config is None or getattr(config, "model_type", None) not in SHARED_PREFIX_MODEL_TYPES:
        return False
    if getattr(config, "_attn_implementation", None) not in _MASKED_ATTENTION:
        return False
    if any(kind != "full_attention" for kind in getattr(config, "layer_types", None) or ()):
        return False
    if config.model_type == "mistral" and getattr(config, "sliding_window", None) is not None:
        return False
    score = getattr(backbone, "score", None)
    score = getattr(score, "original_module", score)  # a LoRA run's head sits in peft's ModulesToSaveWrapper
    return isinstance(score, nn.Linear) and getattr(config, "is_causal", True)


def shared_length(chosen: Sequence[int], rejected: Sequence[int], n_special: int) -> int:
    """Tokens the pair's row shares: the longest common prefix, or 0 when it is not packed.

    Args:
        chosen: Token ids of ``prompt + chosen``.
        rejected: Token ids of ``prompt + rejected``.
        n_special: Special tokens the tokenizer puts before every text (``<s>``, ``[CLS]``).

    Returns:
        The common prefix length if it holds more than the special tokens, else 0 (two rows).
    """
    n = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        n += 1
    return n if n > n_special else 0


def row_lengths(chosen: Sequence[int], rejected: Sequence[int], shared: int) -> int:
    """Width the pair needs in a batch: its packed row, or the longer text when not packed."""
    return len(chosen) + len(rejected) - shared if shared else max(len(chosen), len(rejected))


def _last_real(ids: Sequence[int], pad_id: int) -> int:
    """Index of the last token that is not the pad token (0 if none), as transformers' pooling reads it."""
    return next((i for i in range(len(ids) - 1, -1, -1) if ids[i] != pad_id), 0)


def pack_pairs(
    chosen: Sequence[Sequence[int]],
    rejected: Sequence[Sequence[int]],
    shared: Sequence[int],
    pad_id: int,
) -> dict[str, torch.Tensor]:
    """Lay out a batch of pairs in rows, right-padded.

    Args:
        chosen: Token ids of ``prompt + chosen`` per pair.
        rejected: Token ids of ``prompt + rejected`` per pair.
        shared: Per pair, :func:`shared_length` (0: the pair takes two plain rows).
        pad_id: The pad token id (also what the reward read skips, as in transformers).

    Returns:
        ``input_ids`` ``(rows, width) int64``; ``attention_mask`` ``(rows, 1, width, width)
        bool``, True where a query token (dim 2) may see a key token (dim 3); ``position_ids``
        ``(rows, width) int64``; ``chosen_index`` and ``rejected_index`` ``(pairs,) int64``,
        flat indices into ``rows * width`` of the tokens whose hidden state gives each reward.
        A pad token sees the real tokens of its row and itself (never another pad), so no
        attention row is empty; nothing is read from it.
    """
    rows: list[tuple[list[int], list[int], list[int]]] = []  # (ids, positions, segments)
    reads: list[tuple[int, int, int, int]] = []  # (chosen row, col, rejected row, col)
    for c, r, s in zip(chosen, rejected, shared, strict=True):
        c, r = list(c), list(r)
        c_read, r_read = _last_real(c, pad_id), _last_real(r, pad_id)
        if s:
            ids = c + r[s:]
            positions = list(range(len(c))) + list(range(s, len(r)))
            segments = [_SHARED] * s + [_CHOSEN] * (len(c) - s) + [_REJECTED] * (len(r) - s)
            r_col = r_read if r_read < s else len(c) + r_read - s
            reads.append((len(rows), c_read, len(rows), r_col))
            rows.append((ids, positions, segments))
        else:
            reads.append((len(rows), c_read, len(rows) + 1, r_read))
            rows += [(c, list(range(len(c))), [_SHARED] * len(c)), (r, list(range(len(r))), [_SHARED] * len(r))]

    width = max(len(ids) for ids, _, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), _PAD, dtype=torch.long)
    for i, (ids, positions, segments) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        position_ids[i, : len(ids)] = torch.as_tensor(positions, dtype=torch.long)
        segment[i, : len(ids)] = torch.as_tensor(segments, dtype=torch.long)

    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    mask = causal & (key != _PAD) & ~((query == _REJECTED) & (key == _CHOSEN))
    mask |= torch.eye(width, dtype=torch.bool) & (query == _PAD)
    reads_t = torch.tensor(reads, dtype=torch.long).reshape(-1, 4)
    return {
        "input_ids": input_ids,
        "attention_mask": mask[:, None],
        "position_ids": position_ids,
        "chosen_index": reads_t[:, 0] * width + reads_t[:, 1],
        "rejected_index": reads_t[:, 2] * width + reads_t[:, 3],
    }


class SharedPrefixRewardModel(nn.Module):
    """Chosen and rejected rewards of packed pairs (:func:`pack_pairs`) in one forward.

    It holds the same ``backbone`` module as the :class:`TextRewardModel` it is built from,
    so both share every parameter and have the same ``state_dict`` keys: a checkpoint of
    one loads into the other, and training this module trains the text model.

    Args:
        model: A text reward model whose backbone passes :func:`supports_shared_prefix`.

    Raises:
        ValueError: The backbone is not one that can be packed exactly.
    """

    def __init__(self, model: TextRewardModel) -> None:
        super().__init__()
        if not supports_shared_prefix(model.backbone):
            config = model.backbone.config
            raise ValueError(
                f"shared-prefix pairs need a decoder of {sorted(SHARED_PREFIX_MODEL_TYPES)} with eager or sdpa "
                f"attention and no sliding window; got {config.model_type!r} with "
                f"{config._attn_implementation!r} attention"
            )
        self.backbone = model.backbone

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        chosen_index: torch.Tensor,
        rejected_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of the chosen and rejected texts.

        Args:
            input_ids: ``(rows, width) int64``.
            attention_mask: ``(rows, 1, width, width) bool``, True where a query may see a key.
            position_ids: ``(rows, width) int64``.
            chosen_index: ``(pairs,) int64`` flat token indices of the chosen rewards.
            rejected_index: ``(pairs,) int64`` flat token indices of the rejected rewards.

        Returns:
            ``(pairs,) float32`` chosen and ``(pairs,) float32`` rejected rewards.
        """
        backbone = self.backbone
        if backbone.config._attn_implementation == "eager":  # eager adds the mask to the scores
            dtype = backbone.dtype
            attention_mask = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device).masked_fill(
                ~attention_mask, torch.finfo(dtype).min
            )
        hidden = backbone.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        picked = hidden.reshape(-1, hidden.shape[-1])[torch.cat([chosen_index, rejected_index])]
        rewards = backbone.score(picked).squeeze(-1).float()
        return rewards[: len(chosen_index)], rewards[len(chosen_index) :]
