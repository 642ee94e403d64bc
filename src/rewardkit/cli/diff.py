"""``rewardkit diff``: compare two versions' params, metrics, tensors and behaviour."""

from __future__ import annotations

from typing import Annotated

import typer

from rewardkit import api
from rewardkit.cli.options import FormatOption, JsonOption, RepoOption, open_repo
from rewardkit.cli.render import behaviour_table, console, metrics_table, params_table, print_json, tensors_table


def diff(
    a: Annotated[str, typer.Argument(help="The old version: branch, tag, alias, branch~N or commit-id prefix.")],
    b: Annotated[str, typer.Argument(help="The new version, named the same ways.")],
    probe: Annotated[
        list[str] | None,
        typer.Option("--probe", help="Preference data to score both versions on (every non-tied pair), instead "
                     "of the probe pairs `train` stored with them. Repeat for several. For state-action models: "
                     "one transitions file to compute EPIC on.", show_default=False),
    ] = None,
    format: FormatOption = None,  # noqa: A002
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Most-changed tensors to list.")] = 10,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Compare version B with version A: metrics by evaluation set, params, tensors, behaviour.

    Unchanged tensors (same object) are not read; changed ones are compared two at a time
    (relative L2 change, cosine, max |B−A|). Behaviour compares the rewards both versions
    gave the probe pairs `train --commit` stored, or, with --probe, scores both on that data.
    Two state-action reward models are compared by EPIC distance (0: the same reward up to
    shaping and scale, 1: opposite), on random roll-outs of their environment or on
    --probe FILE transitions.
    """
    with open_repo(repo) as r:
        result = api.diff(a, b, probe=probe or None, format=format, repo=r, top_k=top_k)
    if as_json:
        print_json(result.to_dict())
        return
    d = result.store
    console.print(f"A {d.a.id[:10]} {d.a.message.partition(chr(10))[0]}")
    console.print(f"B {d.b.id[:10]} {d.b.message.partition(chr(10))[0]}")
    console.print(metrics_table(d.metrics))
    console.print(params_table(d))
    console.print(tensors_table(d))
    if result.reward_distance is None:
        console.print(behaviour_table(result.behaviour))
        return
    r = result.reward_distance
    if r.epic is None:
        console.print(f"EPIC distance: none ({r.missing})")
        return
    e = r.epic
    console.print(f"EPIC distance {e.distance:.4f} ({e.level:.0%} CI {e.ci_low:.4f} .. {e.ci_high:.4f}) on "
                  f"{r.source}: {e.n_samples} transitions, {e.n_mean_samples} samples per canonicalising mean, "
                  f"discount {e.discount}")
