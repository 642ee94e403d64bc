"""Packed ("unpadded") forward of a BERT sequence classifier: arithmetic on real tokens only.

A padded batch spends every Linear, LayerNorm and GELU on its pad slots, and the last layer
computes a hidden state for every token although the pooler reads only the first one
(``[CLS]``). This forward computes the same logits as
``BertForSequenceClassification(input_ids, attention_mask).logits`` with less arithmetic:

1. the real tokens are gathered into one ``(tokens, hidden)`` matrix, and the embeddings and
   every layer's Linear/LayerNorm/GELU run on that matrix only;
2. attention alone needs the sequences apart: queries, keys and values are scattered in
   one copy to a zero-padded, head-major ``(batch, heads, seq, head_dim)`` layout, attended
   with pad keys masked (one ``baddbmm`` + softmax + ``bmm``, or SDPA; see
   :data:`Attention`), and the context vectors gathered back to packed rows;
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

Attention = Literal["auto", "baddbmm", "sdpa"]
"""The attention kernel on the padded head-major layout.

``"baddbmm"`` is one ``baddbmm`` (scaled scores plus the additive key mask) + softmax +
``bmm``; ``"sdpa"`` is ``F.scaled_dot_product_attention`` with a boolean key mask.
``"auto"`` takes ``baddbmm`` for bf16/fp16 on the CPU, where it beat SDPA (the CPU's bf16
SDPA backward is slow), and SDPA otherwise (faster in float32 on the CPU; fused kernels on
GPUs). Measured with bench/encoder_forward.py (numbers in bench/README.md)."""


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
    attention: Attention = "auto",
) -> torch.Tensor:
    """Logits of a ``BertForSequenceClassification`` from real tokens only.

    Equal to ``backbone(input_ids=input_ids, attention_mask=attention_mask).logits`` up to
    floating-point rounding; call only where :func:`supports` says so.

    Args:
        backbone: A ``BertForSequenceClassification``.
        input_ids: ``(batch, seq) int64``.
        attention_mask: ``(batch, seq)``, 1 for real tokens; ``attention_mask[:, 0]`` all 1.
        attention: The attention kernel (see :data:`Attention`).

    Returns:
        ``(batch, num_labels)`` logits, in the autocast dtype if autocast is on.
    """
    bert = backbone.bert
    real = attention_mask.bool()
    rows, columns = real.nonzero(as_tuple=True)  # packed token i sits at (rows[i], columns[i])
    lengths = real.sum(1)
    cls = torch.cumsum(lengths, 0) - lengths  # packed index of each row's first token
    ids = input_ids[rows, columns]
    hidden = bert.embeddings(  # position = column, as HF's default position ids
        input_ids=ids[None], position_ids=columns[None], token_type_ids=torch.zeros_like(ids)[None]
    )[0]  # (tokens, hidden)
    key_pad = ~real[:, None, None, :]  # (batch, 1, 1, seq): keys to ignore
    slots = (rows, columns)

    layers = bert.encoder.layer
    for layer in layers[:-1]:
        context = _self_attention(layer.attention.self, hidden, None, slots, key_pad, attention)
        attended = layer.attention.output(context, hidden)
        hidden = layer.output(layer.intermediate(attended), attended)

    last = layers[-1]
    first = hidden.index_select(0, cls)  # (batch, hidden): only [CLS] reaches the pooler
    context = _self_attention(last.attention.self, hidden, first, slots, key_pad, attention)
    attended = last.attention.output(context, first)
    first = last.output(last.intermediate(attended), attended)

    pooled = bert.pooler.activation(bert.pooler.dense(first))
    return backbone.classifier(backbone.dropout(pooled))


def _self_attention(
    module: nn.Module,
    hidden: torch.Tensor,
    queries_from: torch.Tensor | None,
    slots: tuple[torch.Tensor, torch.Tensor],
    key_pad: torch.Tensor,
    attention: Attention,
) -> torch.Tensor:
    """Multi-head self-attention of packed tokens, each sequence attending to its own tokens.

    Args:
        module: A ``BertSelfAttention`` (its ``query``/``key``/``value``/``dropout`` are used).
        hidden: ``(tokens, hidden)`` packed hidden states: the keys and values.
        queries_from: ``(batch, hidden)`` hidden states of one query token per sequence
            (the ``[CLS]`` rows), or ``None`` for a query at every token.
        slots: ``(row, column)`` of each packed token in the padded batch, two ``(tokens,)``.
        key_pad: ``(batch, 1, 1, seq) bool``, True at pad slots (keys to ignore).
        attention: The attention kernel (see :data:`Attention`).

    Returns:
        ``(tokens, hidden)`` context vectors, or ``(batch, hidden)`` with ``queries_from``.
    """
    heads, head_dim = module.num_attention_heads, module.attention_head_size
    batch, seq = key_pad.shape[0], key_pad.shape[-1]
    if queries_from is None:
        projections = [module.query(hidden), module.key(hidden), module.value(hidden)]
    else:
        projections = [module.key(hidden), module.value(hidden)]
    grid = _Pad.apply(torch.cat(projections, dim=1), *slots, batch, seq, heads, head_dim)
    if queries_from is None:
        query, key, value = grid.unbind(0)  # each (batch, heads, seq, head_dim)
    else:
        query = module.query(queries_from).view(batch, heads, 1, head_dim)
        key, value = grid.unbind(0)
    dropout = module.dropout.p if module.training else 0.0
    if attention == "auto":
        attention = "baddbmm" if value.dtype != torch.float32 and value.device.type == "cpu" else "sdpa"

    if attention == "sdpa":
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=~key_pad, dropout_p=dropout,
                                             scale=module.scaling)
    else:
        n_query = query.shape[2]
        bias = torch.zeros(key_pad.shape, dtype=value.dtype, device=value.device)
        bias = bias.masked_fill(key_pad, float("-inf")).expand(batch, heads, 1, seq).reshape(batch * heads, 1, seq)
        scores = torch.baddbmm(bias, query.reshape(batch * heads, n_query, head_dim),
                               key.reshape(batch * heads, seq, head_dim).transpose(1, 2), alpha=module.scaling)
        probs = scores.softmax(dim=-1)
        if dropout:
            probs = module.dropout(probs)
        out = torch.bmm(probs, value.reshape(batch * heads, seq, head_dim))
        out = out.view(batch, heads, n_query, head_dim)

    if queries_from is not None:
        return out.reshape(batch, heads * head_dim)
    return _Unpad.apply(out, *slots)


class _Pad(torch.autograd.Function):
    """Packed ``(tokens, parts * heads * head_dim)`` to zero-padded ``(parts, batch, heads, seq, head_dim)``.

    One strided scatter straight into the head-major layout that the batched matmuls read
    (no separate transpose copy); the backward is the matching gather. :class:`_Unpad` is the
    same pair the other way round.
    """

    @staticmethod
    def forward(ctx, packed, rows, columns, batch, seq, heads, head_dim):  # noqa: ANN001, ANN205, D102
        ctx.save_for_backward(rows, columns)
        ctx.width = packed.shape[1]
        return _scatter_heads(packed, rows, columns, batch, seq, heads, head_dim)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205, D102
        rows, columns = ctx.saved_tensors
        packed = grad.permute(1, 3, 0, 2, 4)[rows, columns]  # (tokens, parts, heads, head_dim)
        return packed.reshape(len(rows), ctx.width), None, None, None, None, None, None


class _Unpad(torch.autograd.Function):
    """Padded ``(batch, heads, seq, head_dim)`` back to packed ``(tokens, heads * head_dim)``."""

    @staticmethod
    def forward(ctx, padded, rows, columns):  # noqa: ANN001, ANN205, D102
        ctx.save_for_backward(rows, columns)
        ctx.shape = padded.shape
        return padded.permute(0, 2, 1, 3)[rows, columns].reshape(len(rows), -1)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205, D102
        rows, columns = ctx.saved_tensors
        batch, heads, seq, head_dim = ctx.shape
        return _scatter_heads(grad, rows, columns, batch, seq, heads, head_dim)[0], None, None


def _scatter_heads(
    packed: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, batch: int, seq: int, heads: int, head_dim: int
) -> torch.Tensor:
    """``(tokens, parts * heads * head_dim)`` to ``(parts, batch, heads, seq, head_dim)``, zeros at pad slots."""
    tokens, width = packed.shape
    parts = width // (heads * head_dim)
    grid = packed.new_zeros(parts, batch, heads, seq, head_dim)
    grid.permute(1, 3, 0, 2, 4)[rows, columns] = packed.view(tokens, parts, heads, head_dim)
    return grid
