"""Reward models in Gymnasium environments: roll-outs, a learned-reward ``VecEnv`` wrapper, preferences.

Needs the ``rl`` extra (``pip install rewardkit[rl]``: Gymnasium and stable-baselines3). Names
follow imitation's preference comparisons: transitions are cut into fragments (segments) by a
:class:`~rewardkit.rl.preferences.Fragmenter`, a gatherer labels pairs of them
(:class:`~rewardkit.rl.preferences.SyntheticGatherer`, B-Pref's simulated teacher), and the
labelled pairs form a :class:`~rewardkit.rl.preferences.PreferenceDataset`.
"""

from rewardkit.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "collect": "rewardkit.rl.rollout",
        "make_env": "rewardkit.rl.envs",
        "LearnedRewardVecEnvWrapper": "rewardkit.rl.wrapper",
        "make_learned_reward_env": "rewardkit.rl.wrapper",
        "Fragmenter": "rewardkit.rl.preferences",
        "SyntheticGatherer": "rewardkit.rl.preferences",
        "PreferenceDataset": "rewardkit.rl.preferences",
        "query_schedule": "rewardkit.rl.preferences",
        "select_queries": "rewardkit.rl.preferences",
        "fragment_returns": "rewardkit.rl.preferences",
        "preference_accuracy": "rewardkit.rl.preferences",
        "TaskFamily": "rewardkit.rl.tasks",
        "Task": "rewardkit.rl.tasks",
        "task_family": "rewardkit.rl.tasks",
        "task_preferences": "rewardkit.rl.tasks",
    },
)
