"""Which folders are reward models: a backbone is re-headed, a 2-output classifier is refused."""

import pytest
import torch
import transformers

from rewardkit.errors import ModelError
from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.models.reward_head import check_reward_model_dir


def _save(model: torch.nn.Module, folder):
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(default_backbone()).save_pretrained(folder)
    return folder


def _bert_config(**kwargs) -> transformers.BertConfig:
    return transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, **kwargs)


def test_a_backbone_whose_config_says_two_labels_gets_a_one_output_head(tmp_path):
    torch.manual_seed(0)
    folder = _save(transformers.BertModel(_bert_config()), tmp_path / "backbone")  # num_labels=2 by default
    model = TextRewardModel.load(folder)
    assert model.backbone.config.num_labels == 1
    ids, mask = model.pad([model.encode("", "hello", 16).input_ids])
    assert model(ids, mask).shape == (1,)
    with pytest.raises(ModelError, match="BertModel, not a sequence-classification model"):
        check_reward_model_dir(folder)  # fine to train from, not to commit


def test_a_two_output_classifier_is_refused_as_base_and_for_commit(tmp_path):
    folder = _save(transformers.BertForSequenceClassification(_bert_config(num_labels=2)), tmp_path / "sentiment")
    with pytest.raises(ModelError, match=r"sequence-classification model with 2 outputs \(num_labels=2\)"):
        TextRewardModel.load(folder)
    with pytest.raises(ModelError, match="num_labels=2"):
        check_reward_model_dir(folder)


def test_a_one_output_classifier_loads_as_it_is_and_may_be_committed(tmp_path):
    torch.manual_seed(0)
    saved = transformers.BertForSequenceClassification(_bert_config(num_labels=1))
    folder = _save(saved, tmp_path / "reward")
    check_reward_model_dir(folder)
    loaded = TextRewardModel.load(folder)
    assert torch.equal(loaded.backbone.classifier.weight, saved.classifier.weight)


def test_a_folder_without_weights_is_not_a_reward_model(tmp_path):
    (tmp_path / "config.json").write_text(_bert_config(num_labels=1).to_json_string())
    with pytest.raises(ModelError, match="has no model.safetensors"):
        check_reward_model_dir(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        check_reward_model_dir(tmp_path / "nothing")
