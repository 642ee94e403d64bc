r"""Rich renderings of what the API returns; no logic beyond layout.

Commit messages, paths, refs, subset names and scored texts are user or data text, and
are printed exactly as they are: :data:`console` reads no rich markup (``[bold]``,
``[/x]``, ``[main 1a2b3c]`` stay literal) and no emoji codes (``:smile:``), and shows
control characters escaped (ESC as ``\x1b``), in plain strings and table cells alike.
Styling is given as :class:`rich.text.Text` styles, never as markup, so no string needs
escaping. Every command prints through :data:`console` (or :func:`print_json`); nothing
else in ``cli/`` makes a console (ruff's TID251 refuses it).
"""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from collections.abc import Callable

    from rewardkit.api.diff import Behaviour
    from rewardkit.evaluation import EvalReport, RatingReport
    from rewardkit.store import Commit, ReflogEntry
    from rewardkit.store.diff import CommitDiff, MetricRow
    from rewardkit.store.fsck import FsckReport
    from rewardkit.store.gc import GcReport
    from rewardkit.store.merge import MergePlan
    from rewardkit.store.remote import TransferReport

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _LiteralConsole(Console):
    r"""A console that prints every string as it is, control characters shown as ``\x1b``.

    Markup and emoji codes are off; control characters (ESC, BEL, CR... but not newline or
    tab) in data would otherwise reach the terminal and recolour or rewrite it.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:  # noqa: D102 (rich's)
        return super().render_str(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text), **kwargs)


console = _LiteralConsole(width=None if Console().is_terminal else 120, markup=False, emoji=False, highlight=False)
MAX_SUBSET_ROWS = 15


def print_json(value: Any) -> None:
    """One JSON document on stdout, for scripts."""
    print(json.dumps(value, indent=2, default=str))


def bold(text: str) -> Text:
    """``text`` in bold, as literal text."""
    return Text(text, style="bold")


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def eval_table(report: EvalReport, title: str) -> Table:
    """Overall row, then one row per source and per subset."""
    table = Table(title=title, title_justify="left")
    for col in ("group", "pairs", "accuracy", "95% CI", "longer wins", "mean margin"):
        table.add_column(col, justify="left" if col == "group" else "right")
    low, high = report.accuracy_ci
    table.add_row(bold("all"), str(report.n_pairs), bold(_pct(report.accuracy)),
                  f"{_pct(low)}–{_pct(high)}", _pct(report.longer_wins_accuracy), f"{report.mean_margin:+.3f}")
    for kind, groups in (("source", report.by_source), ("subset", report.by_subset)):
        rows = sorted(groups.items(), key=lambda kv: -kv[1].n_pairs)
        if kind == "source" and len(rows) < 2:
            continue
        table.add_section()
        for name, g in rows[:MAX_SUBSET_ROWS]:
            table.add_row(f"{kind}: {name}", str(g.n_pairs), _pct(g.accuracy), "", _pct(g.longer_wins_accuracy),
                          f"{g.mean_margin:+.3f}")
        if len(rows) > MAX_SUBSET_ROWS:
            table.add_row(f"… {len(rows) - MAX_SUBSET_ROWS} more {kind}s (see --json)", "", "", "", "", "")
    ties = "" if report.tie_mean_abs_diff is None else f", mean |Δr| on ties {report.tie_mean_abs_diff:.3f}"
    identical = f", {report.n_identical} of them identical texts" if report.n_identical else ""
    empty = f"; {report.n_empty} with an empty response" if report.n_empty else ""
    table.caption = f"ties: {report.n_ties} (not in accuracy{identical}){ties}{empty}; ECE {report.ece:.3f}"
    return table


def rating_table(report: RatingReport, title: str) -> Table:
    """One row: examples, MSE, Pearson and Spearman correlation of rewards with the ratings."""
    table = Table(title=title, title_justify="left")
    for col in ("examples", "MSE", "Pearson", "Spearman", "mean rating", "mean predicted"):
        table.add_column(col, justify="right")
    table.add_row(str(report.n_examples), bold(_num(report.mse)), _num(report.pearson), _num(report.spearman),
                  _num(report.mean_rating), _num(report.mean_prediction))
    return table


def text_rewards_table(texts: list[str], rewards: list[float]) -> Table:
    """One row per scored text: reward, then the text as given."""
    table = Table("reward", "text")
    for text, reward in zip(texts, rewards, strict=True):
        table.add_row(f"{reward:+.4f}", text)
    return table


def pair_rewards_table(rows: list[dict[str, Any]]) -> Table:
    """One row per record of a data file: where it is, r_chosen, r_rejected, their difference, tie."""
    table = Table("record", "r_chosen", "r_rejected", "r_chosen − r_rejected", "tie")
    for row in rows:
        table.add_row(row["location"], f"{row['chosen']:+.4f}", f"{row['rejected']:+.4f}",
                      f"{row['difference']:+.4f}", "tie" if row["tie"] else "")
    return table


def _decorations(refs: dict[str, str], current: str | None) -> dict[str, list[str]]:
    """Commit id -> labels like git's ``HEAD -> main, tag: v1``, plus ``alias: production``."""
    labels: dict[str, list[str]] = {}
    for full, cid in refs.items():
        kind, _, name = full.removeprefix("refs/").partition("/")
        label = {"heads": name, "tags": f"tag: {name}", "aliases": f"alias: {name}", "remotes": name}.get(kind, full)
        if kind == "heads" and name == current:
            label = f"HEAD -> {name}"
        labels.setdefault(cid, []).append(label)
    return labels


def graph_rows(commits: list[Commit]) -> list[tuple[str, Commit | None]]:
    r"""Draw the history as ``git log --graph`` does: one row per commit, connector rows between.

    ``commits`` must be in topological order, children first (as :meth:`Repository.log`
    returns them). Each lane is a column waiting for a commit (``|``); ``*`` marks the
    commit. When lanes change (a merge opens lanes for its further parents, lanes that wait
    for the same commit join, a root commit's lane ends), a connector row draws every lane's
    move: ``|`` straight down, ``\`` one column right, ``/`` one column left (``_`` fills a
    longer move).

    Returns:
        (graph text, commit) per row; connector rows carry ``None``.
    """
    lanes: list[str] = []
    rows: list[tuple[str, Commit | None]] = []

    def move(targets: list[list[str]]) -> list[str]:
        """Lanes after each old lane ``i`` goes to the lanes of ``targets[i]``; draws the connector row."""
        new: list[str] = []
        edges: list[tuple[int, int]] = []
        for i, ids in enumerate(targets):
            for id in ids:
                if id not in new:
                    new.append(id)
                edges.append((i, new.index(id)))
        if any(a != b for a, b in edges) and new:  # nothing to draw when lanes go straight down or all end
            rows.append((_connector(edges, max(len(targets), len(new))), None))
        return new

    for c in commits:
        if c.id not in lanes:
            lanes.append(c.id)
        if lanes.count(c.id) > 1:  # lanes waiting for the same commit join before its row
            lanes = move([[id] for id in lanes])
        col = lanes.index(c.id)
        rows.append((" ".join("*" if i == col else "|" for i in range(len(lanes))), c))
        lanes = move([list(c.parents) if i == col else [id] for i, id in enumerate(lanes)])
    return rows


def _connector(edges: list[tuple[int, int]], width: int) -> str:
    """One connector row: each (old column, new column) edge drawn between two commit rows."""
    cells = [" "] * (2 * width - 1)
    for a, b in edges:
        if a == b:
            cells[2 * a] = "|"
        elif b < a:
            cells[2 * a - 1] = "/"
            for k in range(2 * b + 1, 2 * a - 1):
                cells[k] = "_" if cells[k] == " " else cells[k]
        else:
            cells[2 * a + 1] = "\\"
            for k in range(2 * a + 2, 2 * b):
                cells[k] = "_" if cells[k] == " " else cells[k]
    return "".join(cells).rstrip()


def log_table(commits: list[Commit], refs: dict[str, str], current: str | None = None, graph: bool = False) -> Table:
    """One row per commit, newest first, like ``git log --oneline --decorate`` with metrics.

    Args:
        commits: In topological order, children first.
        refs: Full ref name -> commit id (branches, tags, aliases), drawn as decorations.
        current: The current branch, marked ``HEAD -> main``.
        graph: Add a ``git log --graph`` column.
    """
    table = Table(title="log", title_justify="left")
    columns = ("commit", "refs", "date", "author", "message", "val. accuracy", "data")
    for col in ("graph", *columns) if graph else columns:
        table.add_column(col, no_wrap=col == "graph")
    labels = _decorations(refs, current)
    for drawn, c in graph_rows(commits) if graph else [("", c) for c in commits]:
        if c is None:
            table.add_row(drawn, *[""] * len(columns))
            continue
        acc = (c.metrics or {}).get("validation/accuracy")
        message = c.message.partition("\n")[0]
        if adapter_label(c):
            message += f"  [{adapter_label(c)}]"
        elif lineage_label(c):
            message += f"  [{lineage_label(c)}]"
        row = (c.id[:10], ", ".join(labels.get(c.id, [])), c.created_at[:19].replace("T", " "), c.author,
               message, _pct(acc) if acc is not None else "–", (c.data_fingerprint or "–")[:10])
        table.add_row(*((drawn, *row) if graph else row))
    return table


def refs_table(kind: str, refs: dict[str, str], get_commit: Callable[[str], Commit], current: str | None = None
               ) -> Table:
    """One row per branch, tag or alias: name (current marked *), commit, its message."""
    plural = {"branch": "branches", "alias": "aliases"}.get(kind, f"{kind}s")
    table = Table(kind, "commit", "date", "message", title=plural, title_justify="left")
    for name, cid in refs.items():
        c = get_commit(cid)
        table.add_row(f"* {name}" if name == current else f"  {name}", cid[:10],
                      c.created_at[:19].replace("T", " "), c.message.partition("\n")[0])
    if not refs:
        table.caption = f"no {plural} yet"
    return table


def reflog_table(entries: list[ReflogEntry]) -> Table:
    """One row per ref move, oldest first: time, ref, old -> new, why."""
    table = Table("time", "ref", "old", "new", "message", title="reflog", title_justify="left")
    for e in entries:
        table.add_row(e.time[:19].replace("T", " "), e.ref.removeprefix("refs/"), (e.old or "(none)")[:10],
                      (e.new or "(deleted)")[:10], e.message)
    return table


def commit_table(commit: Commit, n_tensors: int, n_files: int, n_params: int) -> Table:
    """Key/value view of one commit; its metrics go in :func:`metrics_table`."""
    table = Table(show_header=False, title=f"commit {commit.id}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("parents", ", ".join(p[:10] for p in commit.parents) or "(root)")
    table.add_row("author", commit.author)
    table.add_row("date", commit.created_at)
    table.add_row("message", commit.message)
    table.add_row("backbone", commit.backbone or "–")
    if adapter_label(commit):
        adapter = commit.params["adapter"]
        table.add_row("adapter", f"{adapter_label(commit)} on base {str(adapter.get('base'))[:10]} "
                                 f"(alpha {adapter.get('lora_alpha')}, targets "
                                 f"{', '.join(adapter.get('target_modules') or [])}; head "
                                 f"{', '.join(adapter.get('modules_to_save') or [])}); tensors below are the adapter's")
    if lineage_label(commit):
        frozen = (commit.params or {}).get("frozen")
        table.add_row("lineage", f"{lineage_label(commit)} (its weights were the starting point)"
                                 + (f"; frozen: {', '.join(frozen)}" if frozen else ""))
    table.add_row("data fingerprint", commit.data_fingerprint or "–")
    for name, value in (commit.params or {}).get("fingerprints", {}).items():  # train, validation, test, eval sets
        table.add_row(f"fingerprint {name}", str(value))
    table.add_row("model", f"{n_tensors} tensors ({n_params / 1e6:.1f}M parameters), {n_files} files")
    config = (commit.params or {}).get("config", {})
    if config:
        table.add_row("params", ", ".join(f"{k}={v}" for k, v in config.items() if v is not None))
    return table


# -- lineage: LoRA adapters (issue 6) and init-from bases (train --init-from, training.transfer) ---------

def lineage_label(commit: Commit) -> str | None:
    """``from 1a2b3c4d5e`` for a model initialised from a stored version (``params["base"]``), else None."""
    base = (commit.params or {}).get("base")
    return f"from {base[:10]}" if isinstance(base, str) else None


def adapter_label(commit: Commit) -> str | None:
    """``LoRA r=8`` for a LoRA adapter commit (``params["adapter"]``), else None."""
    adapter = (commit.params or {}).get("adapter")
    if not isinstance(adapter, dict):
        return None
    return f"LoRA r={adapter.get('r')}"


# -- fsck and gc (cli/maintenance.py) ---------------------------------------------------------


def fsck_summary(report: FsckReport) -> Text:
    """One line per finding, errors first (``error:`` or ``info:``), then what was checked and the verdict."""
    lines = [Text(f"{'error' if f.error else 'info'}: {f.detail}",
                  style="bold red" if f.error else "") for f in report.findings]
    errors = len(report.errors)
    verdict = f"{errors} error(s): the repository is damaged" if errors else "ok: nothing is wrong"
    infos = len(report.findings) - errors
    lines.append(Text(f"fsck {report.path}: {report.objects} objects re-hashed, {report.commits} commits, "
                      f"{report.refs} refs, {report.reflog_entries} reflog entries checked; {verdict}"
                      + (f"; and {infos} more finding(s), for information only" if infos else ""), style="bold"))
    return Text("\n").join(lines)


def _size(n: int) -> str:
    """``n`` bytes as ``512 B``, ``1.5 KiB``, ``2.0 GiB``."""
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"


MAX_LISTED = 20


def gc_summary(report: GcReport) -> Text:
    """What gc removed (or would remove), and what it kept."""
    verb = "would remove" if report.dry_run else "removed"
    lines = [
        f"gc {verb} {len(report.removed_objects)} objects ({_size(report.bytes_freed)}), "
        f"{len(report.removed_commits)} unreachable commits and {len(report.removed_temp_files)} temp files",
        f"kept {report.kept_objects} objects of {report.reachable_commits} reachable commits, and "
        f"{report.young_objects} unreachable objects younger than the grace period ({report.grace_s:g} s)",
    ]
    if report.expired_reflog_entries:
        lines.insert(1, f"{'would expire' if report.dry_run else 'expired'} {report.expired_reflog_entries} "
                        "reflog entries first")
    for what, names in (("object", report.removed_objects), ("commit", report.removed_commits),
                        ("temp file", report.removed_temp_files)):
        lines += [f"  {verb} {what} {name}" for name in names[:MAX_LISTED]]
        if len(names) > MAX_LISTED:
            lines.append(f"  … and {len(names) - MAX_LISTED} more {what}s (see --json)")
    return Text("\n".join(lines))


# -- diff and metrics by evaluation set (store.diff, api.diff) ----------------------------


def _value(value: Any) -> str:
    """A param or config value as the user wrote it (``5e-05`` stays ``5e-05``); ``–`` when absent."""
    if value is None:
        return "–"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _num(value: Any, signed: bool = False) -> str:
    """A metric or statistic: ints as they are, floats to 4 decimals, or 3 digits when tiny or huge."""
    if value is None:
        return "" if signed else "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _value(value)
    if value == 0:
        return "0"
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    if not math.isfinite(value):
        return str(value)
    sign = "+" if signed else ""
    return f"{value:{sign}.4f}" if 1e-3 <= abs(value) < 1e6 else f"{value:{sign}.3g}"


def metrics_table(rows: list[MetricRow], title: str = "metrics", labels: tuple[str, ...] = ("A", "B")) -> Table:
    """Metrics grouped by evaluation set, one section per set.

    With one label (``show``) a value column; with two (``diff``) both values and the change.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("set")
    table.add_column("metric")
    for label in labels:
        table.add_column(label, justify="right")
    if len(labels) == 2:
        table.add_column("change", justify="right")
    group = None
    for row in rows:
        if group is not None and row.set != group:
            table.add_section()
        first = row.set != group
        group = row.set
        cells = [_num(row.a)] + ([_num(row.b), _num(row.change, signed=True)] if len(labels) == 2 else [])
        table.add_row(bold(row.set) if first else "", row.metric, *cells)
    return table


def params_table(d: CommitDiff) -> Table:
    """Params (dotted keys), model config keys and model files that differ, old → new."""
    table = Table(title="params and config (only what differs)", title_justify="left")
    for col in ("where", "key", "A", "B"):
        table.add_column(col)
    for where, changes in (("params", d.params), ("config.json", d.model_config)):
        for c in changes:
            table.add_row(where, c.key, _value(c.a), _value(c.b))
    for name, status in d.files.items():
        table.add_row("file", name, "" if status == "added" else "present", status)
    if not table.rows:
        table.add_row("", "(no differences)", "", "")
    return table


def tensors_table(d: CommitDiff) -> Table:
    """The tensors summary in the caption, and the top-k most changed tensors by relative L2 change."""
    s = d.summary
    table = Table(title=f"tensors: top {len(d.top)} by relative L2 change", title_justify="left")
    for col in ("tensor", "dtype", "shape", "‖B−A‖/‖A‖", "cosine", "max |B−A|"):
        table.add_column(col, justify="left" if col in ("tensor", "dtype", "shape") else "right")
    for t in d.top:
        st = t.stats
        relative = "inf (‖A‖=0)" if st.relative_l2 == math.inf else _num(st.relative_l2)
        table.add_row(t.name, t.b.dtype, str(list(t.b.shape)), relative, _num(st.cosine), _num(st.max_abs_diff))
    others = [t for t in d.tensors if t.status in ("added", "removed", "incompatible")]
    if others:
        table.add_section()
        for t in others:
            a = f"{t.a.dtype} {list(t.a.shape)}" if t.a else "–"
            b = f"{t.b.dtype} {list(t.b.shape)}" if t.b else "–"
            table.add_row(t.name, t.status, f"{a} → {b}", "", "", "")
    counts = ", ".join(f"{n} {'of other dtype/shape' if status == 'incompatible' else status}"
                       for status, n in s.counts.items())
    table.caption = (f"{counts}; {_size(s.bytes_differ)} of B's {_size(s.bytes_b)} differ from A "
                     f"({_size(s.bytes_removed)} removed)")
    return table


def behaviour_table(b: Behaviour) -> Table:
    """Spearman, preference agreement, accuracy, reward drift and length correlation of A and B."""
    table = Table(title=f"behaviour on {b.n_pairs} pairs ({b.source})", title_justify="left")
    for col in ("measure", "A", "B", "change"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    g = b.agreement
    if g is None:
        table.add_row("no comparison", "", "", "")
        table.caption = b.missing
        return table
    length_change = None if None in (g.length_corr_a, g.length_corr_b) else g.length_corr_b - g.length_corr_a
    table.add_row("Spearman rank correlation of rewards", "", "", _num(g.spearman))
    table.add_row("pairs ordered the same way", "", "", _pct(g.preference_agreement))
    table.add_row("pairwise accuracy", _pct(g.accuracy_a), _pct(g.accuracy_b),
                  f"{100 * (g.accuracy_b - g.accuracy_a):+.1f} pts")
    table.add_row("reward mean", _num(g.mean_a), _num(g.mean_b), _num(g.mean_drift, signed=True))
    table.add_row("reward std", _num(g.std_a), _num(g.std_b), _num(g.std_drift, signed=True))
    table.add_row("corr(reward, length in chars)", _num(g.length_corr_a), _num(g.length_corr_b),
                  _num(length_change, signed=True))
    table.caption = "a pair tied in one version only counts as ordered differently"
    return table


# -- merge -----------------------------------------------------------------------------


def merge_summary(plan: MergePlan, commit: Commit | None) -> str:
    """Git's words: "Already up to date.", "Fast-forward", or the merge commit and what each tensor did."""
    if plan.kind == "up-to-date":
        return "Already up to date."
    if plan.kind == "fast-forward":
        return f"Updating {plan.head[:10]}..{(plan.target or '')[:10]}\nFast-forward {plan.branch}"
    counts = plan.counts()
    first = (commit.message if commit else "").partition("\n")[0]
    deleted = f", {counts['deleted']} deleted" if counts["deleted"] else ""
    return (f"[{plan.branch} {commit.id[:10] if commit else '?'}] {first}\n"
            f"Merge made by the '{plan.strategy}' strategy from base {(plan.base or '')[:10]}.\n"
            f"tensors: {counts['combined']} combined, {counts['taken']} taken from one side, "
            f"{counts['kept']} unchanged{deleted}")


class TransferBar:
    """A rich progress bar for a push or fetch: objects and bytes (the Progress protocol of rewardkit.store.remote).

    Drawn on stderr, only on a terminal, and cleared when done; the command prints what moved
    with :func:`transfer_summary`. ``advance`` may be called from the transfer's worker threads.
    """

    def __init__(self) -> None:
        """A bar on stderr, not started until :meth:`start`."""
        import threading

        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        err = Console(stderr=True)
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  TextColumn("{task.fields[done]}/{task.fields[objects]} objects"), DownloadColumn(),
                                  TransferSpeedColumn(), console=err, transient=True, disable=not err.is_terminal)
        self._lock = threading.Lock()
        self._task: Any = None
        self._done = 0

    def start(self, what: str, objects: int, bytes: int) -> None:  # noqa: A002 (the protocol's name)
        """Begin a bar for ``what`` (e.g. ``push origin``): ``objects`` objects of ``bytes`` bytes in all."""
        with self._lock:
            if self._task is None:
                self._progress.start()
            else:
                self._progress.remove_task(self._task)
            self._done = 0
            self._task = self._progress.add_task(what, total=bytes, done=0, objects=objects)

    def advance(self, bytes: int) -> None:  # noqa: A002 (the protocol's name)
        """One more object moved, of ``bytes`` bytes."""
        with self._lock:
            self._done += 1
            self._progress.update(self._task, advance=bytes, done=self._done)

    def __enter__(self) -> TransferBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._progress.stop()


def transfer_summary(what: str, report: TransferReport) -> str:
    """``push origin: 3 objects (1.2 MiB), 1 commit; main -> 1a2b3c4d5e``, as git says what moved."""
    refs = ", ".join(f"{ref.removeprefix('refs/heads/').removeprefix('refs/remotes/')} -> {id[:10]}"
                     for ref, id in report.refs.items())
    moved = (f"{report.objects} object{'s' * (report.objects != 1)} ({_size(report.bytes)}), "
             f"{report.commits} commit{'s' * (report.commits != 1)}")
    return f"{what}: {moved}" + (f"; {refs}" if refs else "")
