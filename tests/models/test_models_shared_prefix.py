"""Shared-prefix pairs: one row per pair gives the rewards and gradients of two rows."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny_decoders import TINY_DECODERS, tiny_llama
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from rewardkit.models import TextRewardModel
from rewardkit.models.shared_prefix import (
    SharedPrefixRewardModel,
    pack_pairs,
    row_lengths,
    shared_length,
    supports_shared_prefix,
)
from rewardkit.models.text import set_pad_token
from rewardkit.training.objectives import bradley_terry_loss

# (prompt, chosen, rejected): different lengths, a pair without prompt (two rows), a rejected
# text that is a prefix of the chosen one, and a long prompt that the truncation policy trims
# differently for the two responses at max_length 40 (two rows).
PAIRS = [
    ("What is the capital of France?", " Paris.", " I think it is Lyon, but I am not sure at all."),
    ("Name a fruit.", " An apple, a pear or a plum", " An apple"),
    ("", " Hello there, how can I help?", " Go away."),
    ("Tell me a story about a dragon and a knight who met by the sea every spring " * 2,
     " Once there was a dragon.", " No. I will not tell you a story about a dragon and a knight, sorry."),
    ("Say yes.", " Yes.", " No."),
]
MAX_LENGTH = 40


def decoder_model(kind: str, tokenizer, attn: str) -> TextRewardModel:  # noqa: ANN001 (HF tokenizer)
    backbone = TINY_DECODERS[kind](len(tokenizer))
    backbone.set_attn_implementation(attn)
    set_pad_token(tokenizer, backbone)
    return TextRewardModel(backbone, tokenizer)


def encode(model: TextRewardModel, pairs, max_length: int = MAX_LENGTH):  # noqa: ANN001, ANN201
    chosen = [model.encode(p, c, max_length).input_ids for p, c, _ in pairs]
    rejected = [model.encode(p, r, max_length).input_ids for p, _, r in pairs]
    shared = [shared_length(c, r, len(model.special.prefix)) for c, r in zip(chosen, rejected, strict=True)]
    return chosen, rejected, shared


def loss_and_grads(model: TextRewardModel, chosen_r: torch.Tensor, rejected_r: torch.Tensor):  # noqa: ANN201
    model.zero_grad()
    loss = bradley_terry_loss(chosen_r, rejected_r, None, 0.01)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def assert_same_as_two_rows(model: TextRewardModel, chosen, rejected, shared) -> None:  # noqa: ANN001
    """Rewards, Bradley-Terry loss and every parameter gradient agree with the two-row forward."""
    ids, mask = model.pad(chosen + rejected)
    two_c, two_r = model(ids, mask).chunk(2)
    two_loss, two_grads = loss_and_grads(model, two_c, two_r)

    batch = pack_pairs(chosen, rejected, shared, model.tokenizer.pad_token_id)
    one_c, one_r = SharedPrefixRewardModel(model)(**batch)
    one_loss, one_grads = loss_and_grads(model, one_c, one_r)

    torch.testing.assert_close(one_c, two_c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one_r, two_r, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(one_loss, two_loss, rtol=1e-5, atol=1e-6)
    for name, grad in two_grads.items():
        torch.testing.assert_close(one_grads[name], grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def byte_level_bpe(corpus: list[str], vocab_size: int = 400) -> transformers.PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE tokenizer trained offline on ``corpus`` (no special tokens around texts)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def bpe_tokenizer() -> transformers.PreTrainedTokenizerFast:
    return byte_level_bpe([p + c + " " + r for p, c, r in PAIRS] * 20 + ["the world is big", "the work is hard"] * 50)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", sorted(TINY_DECODERS))
def test_rewards_and_gradients_equal_the_two_row_forward(kind, attn, tokenizer_without_pad):
    model = decoder_model(kind, tokenizer_without_pad, attn)
    assert supports_shared_prefix(model.backbone)
    chosen, rejected, shared = encode(model, PAIRS)
    # the cases the batch is meant to cover are really there
    assert shared[0] > 1 and shared[1] == len(rejected[1]) - 1  # "An apple" then [SEP] differs
    assert shared[2] == 0 and shared[3] == 0  # no prompt; prompt trimmed differently (two rows each)
    assert len({row_lengths(c, r, s) for c, r, s in zip(chosen, rejected, shared, strict=True)}) > 3  # padding
    assert_same_as_two_rows(model, chosen, rejected, shared)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_byte_level_bpe_boundary_merge_shares_only_the_common_tokens(kind, bpe_tokenizer):
    model = decoder_model(kind, bpe_tokenizer, "sdpa")
    pairs = [("the wor", "ld is big", "k is hard"), *PAIRS[:2]]
    chosen, rejected, shared = encode(model, pairs)
    prompt_alone = bpe_tokenizer("the wor", add_special_tokens=False)["input_ids"]
    # " world" and " work" are single tokens that straddle the boundary: only "the" is shared
    assert chosen[0][0] == rejected[0][0] and chosen[0][1] != rejected[0][1]
    assert shared[0] == 1 < len(prompt_alone)
    assert chosen[0] == bpe_tokenizer("the world is big", add_special_tokens=False)["input_ids"]
    assert_same_as_two_rows(model, chosen, rejected, shared)


def test_identical_texts_read_both_rewards_from_the_same_token(tokenizer_without_pad):
    model = decoder_model("llama", tokenizer_without_pad, "sdpa")
    chosen, rejected, shared = encode(model, [("Same?", " Yes.", " Yes."), PAIRS[0]])
    assert shared[0] == len(chosen[0])
    batch = pack_pairs(chosen, rejected, shared, tokenizer_without_pad.pad_token_id)
    assert batch["chosen_index"][0] == batch["rejected_index"][0]
    assert_same_as_two_rows(model, chosen, rejected, shared)


# ---------------------------------------------------------------- layout
def test_pack_pairs_layout_positions_mask_and_read_indices():
    pad = 0
    # pair 0: shared [5, 6], chosen rest [7, 8], rejected rest [9]; pair 1 goes as two rows
    batch = pack_pairs([[5, 6, 7, 8], [3, 4]], [[5, 6, 9], [3, 2, 2]], [2, 0], pad)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [3, 4, 0, 0, 0], [3, 2, 2, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 2], [0, 1, 0, 0, 0], [0, 1, 2, 0, 0]]
    m = batch["attention_mask"][:, 0].int().tolist()
    assert m[0] == [[1, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0],
                    [1, 1, 1, 0, 0],
                    [1, 1, 1, 1, 0],
                    [1, 1, 0, 0, 1]]  # the rejected token sees the shared tokens and itself, no chosen one
    assert m[1] == [[1, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0],
                    [1, 1, 1, 0, 0],  # a pad sees the real tokens and itself, never another pad
                    [1, 1, 0, 1, 0],
                    [1, 1, 0, 0, 1]]
    width = 5
    assert batch["chosen_index"].tolist() == [0 * width + 3, 1 * width + 1]
    assert batch["rejected_index"].tolist() == [0 * width + 4, 2 * width + 2]
    assert row_lengths([5, 6, 7, 8], [5, 6, 9], 2) == 5 and row_lengths([3, 4], [3, 2, 2], 0) == 3


def test_shared_length_counts_the_common_prefix_beyond_the_special_tokens():
    assert shared_length([1, 5, 6, 7], [1, 5, 6, 9, 9], n_special=1) == 3
    assert shared_length([1, 5, 6], [1, 8], n_special=1) == 0  # only <s> in common: two rows
    assert shared_length([5, 6], [8, 6], n_special=0) == 0
    assert shared_length([5, 6], [5, 6], n_special=0) == 2


# ---------------------------------------------------------------- which backbones
def test_supported_backbones(tokenizer_without_pad, minilm):
    n = len(tokenizer_without_pad)
    assert all(supports_shared_prefix(build(n)) for build in TINY_DECODERS.values())
    assert not supports_shared_prefix(minilm.backbone)  # an encoder
    flash = tiny_llama(n)
    flash.config._attn_implementation = "flash_attention_2"  # no arbitrary masks
    assert not supports_shared_prefix(flash)
    sliding = transformers.Qwen2ForSequenceClassification(transformers.Qwen2Config(
        vocab_size=n, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, use_sliding_window=True, sliding_window=8, max_window_layers=0, num_labels=1))
    assert not supports_shared_prefix(sliding)
    assert not supports_shared_prefix(transformers.MistralForSequenceClassification(transformers.MistralConfig(
        vocab_size=n, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, sliding_window=4096, num_labels=1)))


def test_shared_prefix_model_refuses_an_encoder(minilm):
    with pytest.raises(ValueError, match="shared-prefix pairs need a decoder.*'bert'"):
        SharedPrefixRewardModel(minilm)


def test_state_dict_keys_equal_the_text_models(tokenizer_without_pad):
    model = decoder_model("gpt2", tokenizer_without_pad, "sdpa")
    packed = SharedPrefixRewardModel(model)
    assert packed.state_dict().keys() == model.state_dict().keys()
    assert all(a is b for a, b in zip(packed.parameters(), model.parameters(), strict=True))
