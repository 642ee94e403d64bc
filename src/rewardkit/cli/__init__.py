"""The ``rewardkit`` command: one module per command group, each a thin layer over :mod:`rewardkit.api`."""
