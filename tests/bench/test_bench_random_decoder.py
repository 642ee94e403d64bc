"""The benchmark's offline decoder: a byte-level BPE and a random Llama that rewardkit loads as is."""

import pytest
import torch
from random_decoder import build_random_decoder

from rewardkit.models import TextRewardModel

TEXTS = [
    "\n\nHuman: How do I bake bread?\n\nAssistant: Mix flour, water, salt and yeast, then bake it.",
    "\n\nHuman: How do I bake bread?\n\nAssistant: I don't know.",
    "\n\nHuman: What is the capital of France?\n\nAssistant: Paris is the capital of France.",
] * 5


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> TextRewardModel:
    folder = build_random_decoder(tmp_path_factory.mktemp("decoder"), TEXTS, vocab_size=300, hidden_size=32,
                                  num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64, max_positions=64)
    model = TextRewardModel.load(folder)
    model.eval()
    return model


def test_no_special_tokens_and_a_pad_token_of_its_own(decoder):
    tokenizer = decoder.tokenizer
    assert len(decoder.special) == 0
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert decoder.backbone.config.pad_token_id == tokenizer.pad_token_id
    assert type(decoder.backbone).__name__ == "LlamaForSequenceClassification"


def test_encoding_is_the_whole_text_and_a_second_space_changes_the_tokens(decoder):
    prompt, response = "\n\nHuman: Hi?\n\nAssistant:", " Paris is the capital."
    ids = decoder.encode(prompt, response, 64).input_ids
    assert ids == decoder.tokenizer(prompt + response)["input_ids"]
    assert ids != decoder.tokenizer(prompt + " " + response)["input_ids"]  # byte-level BPE: spaces are tokens


def test_the_reward_does_not_depend_on_padding(decoder):
    prompts = ["\n\nHuman: Hi?\n\nAssistant:"] * 2
    responses = [" Paris.", " Paris is the capital of France, and it is a large city."]
    alone = decoder.score(prompts[:1], responses[:1], max_length=64)
    together = decoder.score(prompts, responses, max_length=64, batch_size=2)  # the first one padded
    assert torch.allclose(torch.tensor(alone), torch.tensor(together[:1]), atol=1e-5)
