"""A checked-out version loads unchanged in TRL's RewardTrainer and scores as in rewardkit."""

import pytest
import torch

trl = pytest.importorskip("trl")


def test_trl_reward_trainer_loads_a_checkout(cli, tmp_path, tiny_model_dir):
    from datasets import Dataset

    from rewardkit.models import TextRewardModel

    assert cli("init")[0] == 0
    assert cli("commit", tiny_model_dir, "-m", "base")[0] == 0
    assert cli("checkout", "main", "--to", "out")[0] == 0

    ours = TextRewardModel.load(tmp_path / "out")
    ids = [ours.encode("", text, 64).input_ids for text in ("a fine answer", "a bad one")]
    dataset = Dataset.from_dict({"chosen_ids": [ids[0]], "rejected_ids": [ids[1]]})
    args = trl.RewardConfig(output_dir=str(tmp_path / "trl"), report_to="none", use_cpu=True, max_length=64)
    trainer = trl.RewardTrainer(model=str(tmp_path / "out"), args=args, train_dataset=dataset)

    input_ids, attention_mask = ours.pad(ids)
    with torch.no_grad():
        theirs = trainer.model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1)
    assert torch.allclose(theirs, torch.tensor(ours.score(["", ""], ["a fine answer", "a bad one"])), atol=1e-5)
