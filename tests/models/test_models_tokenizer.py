"""load_tokenizer: the tokenizer alone, enough for a chat template, without any weights."""

from __future__ import annotations

import pytest
import transformers

from rewardkit.errors import ModelError
from rewardkit.models import default_backbone
from rewardkit.models.text import load_tokenizer


def test_loads_the_default_backbone_tokenizer():
    assert load_tokenizer()("hello world")["input_ids"] == transformers.AutoTokenizer.from_pretrained(
        default_backbone())("hello world")["input_ids"]


def test_a_folder_with_tokenizer_files_and_no_weights_is_enough(tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(default_backbone())
    tokenizer.chat_template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
    tokenizer.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))
    loaded = load_tokenizer(tmp_path)
    assert loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "[user] hi\n"


def test_missing_folder_or_no_tokenizer_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_tokenizer(tmp_path / "nope" / "deeper" / "still")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="cannot load the tokenizer of"):
        load_tokenizer(tmp_path / "empty")
