import pytest

from rewardkit.errors import ConfigError
from rewardkit.training import RewardConfig


@pytest.mark.parametrize(("field", "value"), [
    ("batch_size", 0), ("gradient_accumulation_steps", 0), ("limit", 0), ("max_length", 1), ("epochs", 0),
    ("epochs", -1), ("learning_rate", 0), ("warmup_ratio", 1.5), ("split", (0.5, 0.5, 0.5)), ("save_steps", 0),
])
def test_out_of_range_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        RewardConfig(**{field: value})


def test_round_trip_through_a_commit():
    config = RewardConfig(max_length=128, bf16=True, limit=5)
    assert RewardConfig.from_dict(config.to_dict() | {"unknown_later_field": 1}) == config
