"""The train command's flags are the RewardConfig fields' flags, so an error naming a flag names a real one."""

from dataclasses import fields

import typer

from rewardkit.cli.main import app
from rewardkit.training import RewardConfig


def test_every_config_flag_is_a_train_option():
    command = typer.main.get_command(app).commands["train"]
    options = {opt for param in command.params for opt in param.opts}
    for field in fields(RewardConfig):
        flag = RewardConfig.flag(field.name)
        assert flag is None or flag in options, (field.name, flag)
