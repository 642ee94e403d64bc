"""Tiny random decoders built from configs, for the models tests (imported by name: every test
folder has its own ``conftest``, so ``from conftest import`` picks whichever pytest loaded last)."""

from __future__ import annotations

import torch
import transformers


def tiny_llama(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised 2-layer Llama with a one-logit head and no pad token id."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
        pad_token_id=None, num_labels=1,
    )
    return transformers.LlamaForSequenceClassification(config).eval()


def tiny_gpt2(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised 2-layer GPT-2 with a one-logit head and no pad token id."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=128,
        pad_token_id=None, bos_token_id=None, eos_token_id=None, num_labels=1,
    )
    return transformers.GPT2ForSequenceClassification(config).eval()


def tiny_qwen2(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised 2-layer Qwen2 (full attention) with a one-logit head and no pad token id."""
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
        pad_token_id=None, num_labels=1,
    )
    return transformers.Qwen2ForSequenceClassification(config).eval()


def tiny_qwen3(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised 2-layer Qwen3 (q/k norms, full attention) with a one-logit head."""
    torch.manual_seed(seed)
    config = transformers.Qwen3Config(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, intermediate_size=64, max_position_embeddings=128,
        pad_token_id=None, num_labels=1,
    )
    return transformers.Qwen3ForSequenceClassification(config).eval()


def tiny_mistral(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised 2-layer Mistral without a sliding window, with a one-logit head."""
    torch.manual_seed(seed)
    config = transformers.MistralConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128, sliding_window=None,
        pad_token_id=None, num_labels=1,
    )
    return transformers.MistralForSequenceClassification(config).eval()


TINY_DECODERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "qwen2": tiny_qwen2, "qwen3": tiny_qwen3,
                 "mistral": tiny_mistral}


def decoder_hidden_states(backbone: torch.nn.Module, input_ids, attention_mask) -> torch.Tensor:
    """Last hidden states of the decoder body (without the score head)."""
    body = backbone.model if hasattr(backbone, "model") else backbone.transformer
    return body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
