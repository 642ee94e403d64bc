"""The truncation policy: prompt trimmed from the left first, response from the right only if needed."""

from __future__ import annotations

import random

import pytest
import torch

from rewardkit.models import Encoded, SpecialTokens, truncate_pair

BERT = SpecialTokens(prefix=(101,), suffix=(102,))
PROMPT = list(range(1, 11))  # 10 prompt tokens: 1..10
RESPONSE = [20, 21, 22]


def test_fits_untouched():
    enc = truncate_pair(PROMPT, RESPONSE, BERT, max_length=15)
    assert enc == Encoded([101, *PROMPT, *RESPONSE, 102], False, False)


def test_exact_fit_is_not_truncated():
    enc = truncate_pair(PROMPT, RESPONSE, BERT, max_length=2 + 10 + 3)
    assert len(enc.input_ids) == 15
    assert not enc.prompt_truncated and not enc.response_truncated


def test_prompt_is_trimmed_from_the_left_first():
    enc = truncate_pair(PROMPT, RESPONSE, BERT, max_length=9)  # room for 7 content tokens
    assert enc.input_ids == [101, 7, 8, 9, 10, 20, 21, 22, 102]  # the end of the prompt stays
    assert enc.prompt_truncated and not enc.response_truncated


def test_prompt_dropped_entirely_when_the_response_exactly_fills_the_budget():
    enc = truncate_pair(PROMPT, RESPONSE, BERT, max_length=5)
    assert enc.input_ids == [101, 20, 21, 22, 102]
    assert enc.prompt_truncated and not enc.response_truncated


def test_response_trimmed_from_the_right_only_when_it_alone_does_not_fit():
    enc = truncate_pair(PROMPT, RESPONSE, BERT, max_length=4)
    assert enc.input_ids == [101, 20, 21, 102]  # the start of the response stays
    assert enc.prompt_truncated and enc.response_truncated


def test_long_response_without_prompt_only_flags_the_response():
    enc = truncate_pair([], list(range(50, 60)), BERT, max_length=6)
    assert enc.input_ids == [101, 50, 51, 52, 53, 102]
    assert not enc.prompt_truncated and enc.response_truncated


def test_special_tokens_kept_on_both_sides_and_without_special_tokens():
    two_sided = SpecialTokens(prefix=(1, 2), suffix=(3,))
    assert truncate_pair([7, 8], [9], two_sided, max_length=5).input_ids == [1, 2, 8, 9, 3]
    bare = SpecialTokens((), ())
    assert len(bare) == 0
    assert truncate_pair([7, 8], [9, 10], bare, max_length=3).input_ids == [8, 9, 10]


@pytest.mark.parametrize("max_length", [0, 1, 2])
def test_max_length_without_room_for_content_raises(max_length):
    with pytest.raises(ValueError, match=f"max_length={max_length}"):
        truncate_pair([1], [2], BERT, max_length)


def test_smallest_valid_max_length_keeps_one_response_token():
    enc = truncate_pair([1, 2], [5, 6], BERT, max_length=3)
    assert enc.input_ids == [101, 5, 102]
    assert enc.prompt_truncated and enc.response_truncated


def test_random_cases_obey_the_policy():
    rng = random.Random(0)
    for _ in range(500):
        prompt = [rng.randrange(1000, 2000) for _ in range(rng.randint(0, 30))]
        response = [rng.randrange(2000, 3000) for _ in range(rng.randint(0, 30))]
        special = SpecialTokens(tuple(range(rng.randint(0, 2))), tuple(range(10, 10 + rng.randint(0, 2))))
        max_length = rng.randint(len(special) + 1, 70)
        enc = truncate_pair(prompt, response, special, max_length)
        ids = enc.input_ids
        budget = max_length - len(special)
        assert len(ids) <= max_length
        assert len(ids) == len(special) + min(budget, len(prompt) + len(response))  # no room wasted
        assert tuple(ids[: len(special.prefix)]) == special.prefix
        assert tuple(ids[len(ids) - len(special.suffix) :]) == special.suffix
        content = ids[len(special.prefix) : len(ids) - len(special.suffix)]
        kept_prompt = [t for t in content if t < 2000]
        kept_response = [t for t in content if t >= 2000]
        assert content == kept_prompt + kept_response
        assert kept_prompt == (prompt[len(prompt) - len(kept_prompt) :] if kept_prompt else [])  # a suffix
        assert kept_response == response[: len(kept_response)]  # a prefix
        assert enc.prompt_truncated == (len(kept_prompt) < len(prompt))
        assert enc.response_truncated == (len(kept_response) < len(response))
        if enc.response_truncated:
            assert kept_prompt == []  # the prompt gave way first
            assert len(response) > budget


def test_special_tokens_from_the_minilm_tokenizer(tokenizer_without_pad):
    special = SpecialTokens.from_tokenizer(tokenizer_without_pad)
    assert special == SpecialTokens((tokenizer_without_pad.cls_token_id,), (tokenizer_without_pad.sep_token_id,))
    assert len(special) == 2


def test_encode_with_a_real_tokenizer_keeps_the_end_of_the_prompt(minilm):
    prompt = "one two three four five six seven eight nine ten"
    response = " alpha beta gamma"  # prompt + response is the scored text
    enc = minilm.encode(prompt, response, max_length=2 + 3 + 4)
    assert len(enc.input_ids) == 9
    assert minilm.tokenizer.decode(enc.input_ids) == "[CLS] seven eight nine ten alpha beta gamma [SEP]"
    assert enc.prompt_truncated and not enc.response_truncated

    enc = minilm.encode(prompt, response, max_length=4)
    assert minilm.tokenizer.decode(enc.input_ids) == "[CLS] alpha beta [SEP]"
    assert enc.prompt_truncated and enc.response_truncated

    enc = minilm.encode("", response, max_length=64)
    assert minilm.tokenizer.decode(enc.input_ids) == "[CLS] alpha beta gamma [SEP]"
    assert not enc.prompt_truncated and not enc.response_truncated


def test_encode_equals_tokenizing_the_joined_text_with_byte_level_bpe():
    """Byte-level BPE (GPT-2, Llama 3, Qwen) folds the space into the next token: the prompt and
    response must be tokenized as one text, as TRL and transformers do, not as two."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rewardkit.models import TextRewardModel

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    corpus = ["Human: how do I bake bread? Assistant: Sure, mix flour and water."] * 20
    raw.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<eos>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<eos>")
    model = TextRewardModel(torch.nn.Identity(), tokenizer)
    prompt, response = "Human: how do I bake bread? Assistant:", " Sure, mix flour and water."
    enc = model.encode(prompt, response, max_length=512)
    assert enc.input_ids == tokenizer(prompt + response)["input_ids"]
    assert not enc.prompt_truncated and not enc.response_truncated
    short = model.encode(prompt, response, max_length=len(enc.input_ids) - 2)
    assert short.prompt_truncated and not short.response_truncated
    assert short.input_ids[-4:] == enc.input_ids[-4:]  # the response survives whole
