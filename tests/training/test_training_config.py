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


FLOATS = ["epochs", "learning_rate", "weight_decay", "warmup_ratio", "max_grad_norm", "center_rewards_coefficient"]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("field", FLOATS)
def test_every_float_must_be_finite(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} \(--[a-z-]+\) must be a finite number") as exc:
        RewardConfig(**{field: value})
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("learning_rate", -1e-5, r"learning_rate \(--lr\) must be a finite number > 0, got -1e-05"),
    ("max_grad_norm", -1.0, r"max_grad_norm \(--max-grad-norm\) must be a finite number >= 0"),
    ("center_rewards_coefficient", -0.01, r"center_rewards_coefficient \(--center-rewards\) .* >= 0"),
    ("gradient_accumulation_steps", 0, r"gradient_accumulation_steps \(--grad-accum\) must be a whole number >= 1"),
    ("num_threads", 0, r"num_threads \(--threads\)"),
    ("seed", -1, r"seed \(--seed\) must be a whole number in \[0, 4294967295\]"),
    ("seed", 2**32, r"seed \(--seed\)"),
    ("batch_size", True, r"batch_size"),
    ("batch_size", 2.5, r"batch_size"),
    ("epochs", "1", r"epochs"),
    ("bf16", "yes", r"bf16 \(--bf16\) must be true or false"),
    ("shared_prefix", "no", r"shared_prefix \(--shared-prefix\) must be true or false"),  # "no" was truthy
    ("split", (0.8, 0.1, float("nan")), r"split"),
])
def test_range_and_type_at_the_boundary(field, value, expected):
    with pytest.raises(ConfigError, match=expected):
        RewardConfig(**{field: value})


def test_boundary_values_are_accepted():
    RewardConfig(warmup_ratio=0.0, weight_decay=0.0, max_grad_norm=0.0, center_rewards_coefficient=0.0, seed=0,
                 epochs=0.01, max_length=4)
    RewardConfig(warmup_ratio=1.0, seed=2**32 - 1, learning_rate=1, epochs=2)  # ints where floats are expected


def test_flags_of_the_fields():
    assert RewardConfig.flag("learning_rate") == "--lr"
    assert RewardConfig.flag("max_length") == "--max-length"
    assert RewardConfig.flag("split") is None
