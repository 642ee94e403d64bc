"""Fixtures for the rewardkit.models tests: the offline MiniLM backbone and tiny random decoders."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny_decoders import decoder_hidden_states, tiny_gpt2, tiny_llama

from rewardkit.models import TextRewardModel, default_backbone


@pytest.fixture(scope="session")
def minilm() -> TextRewardModel:
    """The real default backbone (all-MiniLM-L6-v2, offline), in eval mode; loaded once."""
    model = TextRewardModel.load()
    model.eval()
    return model


@pytest.fixture
def tokenizer_without_pad():
    """A fresh copy of the MiniLM tokenizer with its pad token removed (like most decoders)."""
    tok = transformers.AutoTokenizer.from_pretrained(default_backbone())
    tok.pad_token = None
    assert tok.pad_token is None and tok.pad_token_id is None
    return tok


@pytest.fixture(params=["llama", "gpt2"])
def tiny_decoder(request, tokenizer_without_pad) -> torch.nn.Module:
    """A tiny random decoder (Llama or GPT-2) sized to the MiniLM tokenizer's vocabulary."""
    build = {"llama": tiny_llama, "gpt2": tiny_gpt2}[request.param]
    return build(len(tokenizer_without_pad))


@pytest.fixture
def hidden_states():
    """``hidden_states(backbone, input_ids, attention_mask)`` of a tiny decoder's body."""
    return decoder_hidden_states
