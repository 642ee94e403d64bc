"""Fixtures for the rewardkit.training tests: a tiny random BERT reward model and synthetic pairs."""

from __future__ import annotations

import random

import pytest
import torch
import transformers

from rewardkit.data import PreferencePair
from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.training import RewardConfig

WORDS = "apple banana cherry river mountain cloud stone paper light water".split()


@pytest.fixture(scope="session")
def tokenizer():
    """The MiniLM tokenizer (offline); shared, never modified by the tests."""
    return transformers.AutoTokenizer.from_pretrained(default_backbone())


@pytest.fixture
def tiny_model(tokenizer):
    """``tiny_model(seed=0, dropout=0.1)``: a fresh randomly initialised 1-layer BERT reward model (with dropout)."""

    def build(seed: int = 0, dropout: float = 0.1) -> TextRewardModel:
        torch.manual_seed(seed)
        config = transformers.BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64, num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
            hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        )
        return TextRewardModel(transformers.BertForSequenceClassification(config), tokenizer)

    return build


@pytest.fixture
def pairs() -> list[PreferencePair]:
    """32 pairs: the chosen response is the rejected one plus the word "excellent"."""
    rng = random.Random(0)
    out = []
    for i in range(32):
        base = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))
        out.append(PreferencePair(f"question {i}", chosen=base + " excellent", rejected=base, source="synthetic"))
    return out


@pytest.fixture
def make_config():
    """``make_config(**overrides)``: a small, fast RewardConfig (4 batches of 8 pairs per epoch)."""

    def build(**overrides) -> RewardConfig:
        # Dropout stays on so that determinism and resume are tested with RNG-dependent masks.
        values = dict(max_length=32, epochs=4, batch_size=8, learning_rate=1e-2, warmup_ratio=0.0,
                      logging_steps=4, seed=7, disable_dropout=False)
        values.update(overrides)
        return RewardConfig(**values)

    return build


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture
def snapshot():
    """``snapshot(model)``: a detached copy of the state dict."""
    return weights


@pytest.fixture
def assert_same_weights():
    """``assert_same_weights(a, b)``: bit-identical state dicts."""

    def check(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
        assert a.keys() == b.keys()
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"

    return check


@pytest.fixture
def tiny_decoder_model(tokenizer):
    """``tiny_decoder_model(kind, seed=0)``: a fresh random 2-layer Llama or GPT-2 (dropout 0.1) reward model."""

    def build(kind: str, seed: int = 0) -> TextRewardModel:
        torch.manual_seed(seed)
        common = dict(vocab_size=tokenizer.vocab_size, num_labels=1, pad_token_id=tokenizer.pad_token_id)
        if kind == "llama":
            config = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                              num_key_value_heads=2, intermediate_size=64,
                                              max_position_embeddings=64, attention_dropout=0.1, **common)
            backbone = transformers.LlamaForSequenceClassification(config)
        else:
            config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **common)
            backbone = transformers.GPT2ForSequenceClassification(config)
        return TextRewardModel(backbone, tokenizer)

    return build
