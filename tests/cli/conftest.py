from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from rewardkit.cli.main import main
from rewardkit.models import TextRewardModel, default_backbone
from rewardkit.models.text import set_pad_token

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA


def _tiny_bert(folder: Path, num_labels: int) -> Path:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=num_labels)
    backbone = BertForSequenceClassification(config)
    set_pad_token(tokenizer, backbone)
    return TextRewardModel(backbone, tokenizer).save(folder)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT reward model with the MiniLM tokenizer, saved as a folder."""
    return _tiny_bert(tmp_path_factory.mktemp("tiny") / "model", num_labels=1)


@pytest.fixture(scope="session")
def two_label_model_dir(tmp_path_factory) -> Path:
    """The same tiny BERT as a 2-output sequence classifier (``num_labels=2``), as a sentiment model is."""
    return _tiny_bert(tmp_path_factory.mktemp("tiny2") / "model", num_labels=2)


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run ``rewardkit ARGS`` in a fresh folder; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REWARDKIT_REPO", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # a user's setting would turn on train --mlflow
    monkeypatch.setenv("REWARDKIT_DEBUG", "1")  # an unexpected error fails the test with its traceback

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
