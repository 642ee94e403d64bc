"""Reuse a reward model across the tasks of a family: transfer, multi-task, MAML (issue 8, section 5).

Pendulum with a goal angle: the dynamics never change, only the reward, so one set of
random-policy roll-outs, relabelled per task, serves every task. Runs in about 10 seconds:

    PYTHONPATH=src python examples/rl_reuse.py
"""

import tempfile

import torch

from rewardkit.models import StateActionConfig, StateActionRewardModel
from rewardkit.models.task_conditioned import TaskConditionedConfig, TaskConditionedRewardModel
from rewardkit.rl.preferences import preference_accuracy
from rewardkit.rl.rollout import collect
from rewardkit.rl.tasks import PendulumGoal, task_preferences
from rewardkit.store import Repository
from rewardkit.training import fit_preferences
from rewardkit.training.maml import MAMLConfig, adapt, fit_maml, preference_task_data
from rewardkit.training.multitask import adapt_to_task, fit_multitask
from rewardkit.training.transfer import commit_model, init_from

torch.manual_seed(0)
torch.set_num_threads(1)  # small MLPs: one thread is fastest
family = PendulumGoal()  # 12 goal angles: 8 to train on, 4 held out
train_tasks, new_task = family.tasks("train"), family.tasks("held-out")[0]
rollouts = collect("Pendulum-v1", 4000, seed=0)
labelled = task_preferences(family, rollouts, train_tasks, num_pairs=200, fragment_length=10)
(_, few), = task_preferences(family, rollouts, [new_task], num_pairs=20, fragment_length=10, seed=1)
(_, test), = task_preferences(family, collect("Pendulum-v1", 2000, seed=9), [new_task], num_pairs=300,
                              fragment_length=10, seed=2)
config = StateActionConfig(obs_dim=3, action_kind="continuous", action_dim=1, hidden_sizes=(64, 64))

# 1. Transfer: train on one goal, commit, start the new goal's model from that version.
with tempfile.TemporaryDirectory() as scratch, Repository.init(f"{scratch}/.rewardkit") as repo:
    source = StateActionRewardModel(config)
    _, pairs = labelled[0]
    fit_preferences(source, pairs.fragments1, pairs.fragments2, pairs.preferences, epochs=10, batch_size=64,
                    lr=3e-3, seed=0)
    commit_model(repo, source, f"reward for {labelled[0][0].name}")
    transfer = init_from(repo, "main", kind="state-action")
    transfer.freeze("mlp.0.*")  # keep the first layer
    fit_preferences(transfer.model, few.fragments1, few.fragments2, few.preferences, epochs=50, batch_size=20,
                    lr=1e-3, seed=0, update_normalizer=False)
    child = commit_model(repo, transfer.model, f"fine-tuned for {new_task.name}", transfer=transfer)
    print(f"transfer:   {preference_accuracy(transfer.model, test):.3f}  (lineage: from {child.params['base'][:10]})")

# 2. Multi-task: one R(s, a, task) over the training goals; learn the new goal's embedding from 20 pairs.
multi = TaskConditionedRewardModel(TaskConditionedConfig(**config.to_dict(), n_tasks=len(family.tasks("all"))))
fit_multitask(multi, labelled, epochs=10, batch_size=64, lr=3e-3, seed=0)
adapted = adapt_to_task(multi, new_task, few, train_tasks=train_tasks, epochs=50, batch_size=20, lr=3e-2, seed=0)
print(f"multi-task: {preference_accuracy(adapted, test, new_task):.3f}")

# 3. MAML: meta-train over the training goals, then a few gradient steps on the 20 pairs.
meta = StateActionRewardModel(config)
maml = MAMLConfig(loss="preferences", inner_steps=1, inner_lr=0.1, meta_steps=300, support_size=10, query_size=20)
fit_maml(meta, [preference_task_data(d) for _, d in labelled], maml)
fast = adapt(meta, preference_task_data(few), steps=10, lr=maml.inner_lr)
print(f"maml:       {preference_accuracy(fast, test):.3f}")
