"""Packed ("unpadded") forward of a BERT sequence classifier: arithmetic on real tokens only.

A padded batch spends every Linear, LayerNorm and GELU on its pad slots, and the last layer
computes a hidden state for every token although the pooler reads only the first one
(``[CLS]``). This forward computes the same logits as
``BertForSequenceClassification(input_ids, attention_mask).logits`` with less arithmetic:

1. the real tokens are gathered into one ``(tokens, hidden)`` matrix, and the embeddings and
   every layer's Linear/LayerNorm/GELU run on that matrix only;
2. attention alone needs the sequences apart: keys, queries and values are scattered to a
   padded ``(batch * heads, seq, head_dim)`` layout, scored with one batched matmul
   (``baddbmm``) plus an additive key mask, soft-maxed, multiplied with the values and
   gathered back;
3. the last layer computes only the ``[CLS]`` query row, and its attention output, dense,
   intermediate and output layers for that row, since nothing else reaches the pooler.

It runs the backbone's own modules (``query``, ``key``, ``value``, ``BertSelfOutput``,
``BertIntermediate``, ``BertOutput``, pooler, dropout, classifier), so there are no copies of
the weights: saved checkpoints are unchanged, gradients reach every parameter the HF forward
trains, adapters injected into those Linear layers (LoRA) still apply, and bf16 autocast
applies as it does to the HF forward. Dropout is applied where HF applies it, with the
backbone's own probabilities (same distribution, not the same random draws).

Dispatch rule (:func:`supports`): the backbone is exactly ``BertForSequenceClassification``
(MiniLM and other BERT checkpoints load as it), an encoder (no ``is_decoder``, no cross
attention), with absolute position embeddings and activation checkpointing off; and every
row of the batch has a real first token (right padding, so ``[CLS]`` is real). Anything
else takes the HF forward, which gives the same numbers, only slower.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (torch's own convention)

Attention = Literal["baddbmm", "sdpa"]
ATTENTION: Attention = "baddbmm"
"""Default attention kernel: one ``baddbmm`` + softmax + ``bmm``; ``"sdpa"`` is
``F.scaled_dot_product_attention`` on the same padded layout (see bench/encoder_forward.py)."""


def supports(backbone: nn.Module, attention_mask: torch.Tensor | None = None) -> bool:
    """Whether :func:`sequence_classification_logits` computes ``backbone``'s logits exactly.

    Args:
        backbone: Any module; only a plain BERT encoder classifier qualifies (see the module doc).
        attention_mask: ``(batch, seq)``; if given, every row must have a real first token.

    Returns:
        ``True`` when the packed forward applies, ``False`` when the HF forward must run.
    """
    from transformers import BertForSequenceClassification
    from transformers.models.bert.modeling_bert import BertSelfAttention

    if type(backbone) is not BertForSequenceClassification or backbone.bert.pooler is None:
        return False
    config = backbone.config
    if config.is_decoder or config.add_cross_attention:
        return False
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    if any(getattr(m, "gradient_checkpointing", False) for m in backbone.modules()):
        return False
    if any(type(layer.attention.self) is not BertSelfAttention for layer in backbone.bert.encoder.layer):
        return False
    return attention_mask is None or bool(attention_mask[:, 0].all())


def sequence_classification_logits(
    backbone: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    attention: Attention = ATTENTION,
) -> torch.Tensor:
    """Logits of a ``BertForSequenceClassification`` from real tokens only.

    Equal to ``backbone(input_ids=input_ids, attention_mask=attention_mask).logits`` up to
    floating-point rounding; call only where :func:`supports` says so.

    Args:
        backbone: A ``BertForSequenceClassification``.
        input_ids: ``(batch, seq) int64``.
        attention_mask: ``(batch, seq)``, 1 for real tokens; ``attention_mask[:, 0]`` all 1.
        attention: The attention kernel, ``"baddbmm"`` or ``"sdpa"``.

    Returns:
        ``(batch, num_labels)`` logits, in the autocast dtype if autocast is on.
    """
    bert = backbone.bert
    batch, seq = input_ids.shape
    real = attention_mask.bool()
    # Packed token i sits at flat slot index[i] of the (batch * seq) grid, rows in order.
    index = real.flatten().nonzero().squeeze(1)
    lengths = real.sum(1)
    cls = torch.cumsum(lengths, 0) - lengths  # packed index of each row's first token
    positions = index % seq  # the column, as HF's default position ids
    ids = input_ids.flatten()[index]
    hidden = bert.embeddings(
        input_ids=ids[None], position_ids=positions[None], token_type_ids=torch.zeros_like(ids)[None]
    )[0]  # (tokens, hidden)
    # Additive key mask, broadcast over heads and queries: (batch, 1, 1, seq).
    key_pad = ~real[:, None, None, :]

    layers = bert.encoder.layer
    for layer in layers[:-1]:
        context = _self_attention(layer.attention.self, hidden, None, index, key_pad, batch, seq, attention)
        attended = layer.attention.output(context, hidden)
        hidden = layer.output(layer.intermediate(attended), attended)

    last = layers[-1]
    first = hidden[cls]  # (batch, hidden): only [CLS] reaches the pooler
    context = _self_attention(last.attention.self, hidden, first, index, key_pad, batch, seq, attention)
    attended = last.attention.output(context, first)
    first = last.output(last.intermediate(attended), attended)

    pooled = bert.pooler.activation(bert.pooler.dense(first))
    return backbone.classifier(backbone.dropout(pooled))


def _self_attention(
    module: nn.Module,
    hidden: torch.Tensor,
    queries_from: torch.Tensor | None,
    index: torch.Tensor,
    key_pad: torch.Tensor,
    batch: int,
    seq: int,
    attention: Attention,
) -> torch.Tensor:
    """Multi-head self-attention of packed tokens, each sequence attending to its own tokens.

    Args:
        module: A ``BertSelfAttention`` (its ``query``/``key``/``value``/``dropout`` are used).
        hidden: ``(tokens, hidden)`` packed hidden states: the keys and values.
        queries_from: ``(batch, hidden)`` hidden states of one query token per sequence
            (the ``[CLS]`` rows), or ``None`` for a query at every token.
        index: ``(tokens,)`` flat slot of each packed token in the ``(batch * seq)`` grid.
        key_pad: ``(batch, 1, 1, seq) bool``, True at pad slots (keys to ignore).
        batch: Sequences in the batch.
        seq: Padded length.
        attention: ``"baddbmm"`` or ``"sdpa"``.

    Returns:
        ``(tokens, hidden)`` context vectors, or ``(batch, hidden)`` with ``queries_from``.
    """
    heads, head_dim = module.num_attention_heads, module.attention_head_size
    width = heads * head_dim
    if queries_from is None:
        packed = torch.cat([module.query(hidden), module.key(hidden), module.value(hidden)], dim=1)
    else:
        packed = torch.cat([module.key(hidden), module.value(hidden)], dim=1)
    parts = packed.shape[1] // width
    # (batch * seq, parts * width) with zeros at pad slots -> (parts, batch, heads, seq, head_dim)
    grid = packed.new_zeros(batch * seq, packed.shape[1]).index_copy(0, index, packed)
    grid = grid.view(batch, seq, parts, heads, head_dim).permute(2, 0, 3, 1, 4)
    if queries_from is None:
        query, key, value = grid[0], grid[1], grid[2]
    else:
        query = module.query(queries_from).view(batch, heads, 1, head_dim)
        key, value = grid[0], grid[1]
    dropout = module.dropout.p if module.training else 0.0

    if attention == "sdpa":
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=~key_pad, dropout_p=dropout,
                                             scale=module.scaling)
    else:
        n_query = query.shape[2]
        scores_bias = torch.zeros(key_pad.shape, dtype=value.dtype, device=value.device)
        scores_bias = scores_bias.masked_fill(key_pad, float("-inf")).expand(batch, heads, 1, seq)
        scores = torch.baddbmm(
            scores_bias.reshape(batch * heads, 1, seq),
            query.reshape(batch * heads, n_query, head_dim),
            key.reshape(batch * heads, seq, head_dim).transpose(1, 2),
            alpha=module.scaling,
        )
        probs = scores.softmax(dim=-1)
        if dropout:
            probs = module.dropout(probs)
        out = torch.bmm(probs.to(value.dtype), value.reshape(batch * heads, seq, head_dim))
        out = out.view(batch, heads, n_query, head_dim)

    if queries_from is not None:
        return out.reshape(batch, width)
    return out.transpose(1, 2).reshape(batch * seq, width)[index]
