"""The MLflow tracking bridge of ``rewardkit train --mlflow``: one MLflow run per training run.

The run gets the :class:`~rewardkit.training.RewardConfig` as params (one per field), every
metric the commit stores (``train/...``, ``validation/...``, ``test/...``, one prefix per
``--eval-data`` file), the training curves as stepped metrics (``curve/loss``,
``curve/accuracy``, ``curve/learning_rate``, ``curve/epoch`` at ``step=`` the optimizer step)
and ``curves.csv``/``curves.png`` as artifacts. The commit records the run in
``params["mlflow"]`` (run id, experiment id, tracking URI) and, once the commit has landed,
the run is tagged ``rewardkit.commit`` with its id. A run that ends in an error (training
failed, the commit was refused) is marked FAILED.

Everything goes through MLflow's own :class:`mlflow.MlflowClient` with an explicit tracking
URI (no fluent global state). mlflow is optional (``pip install mlflow``); it is imported
only when a run is started.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from rewardkit.errors import ConfigError

if TYPE_CHECKING:
    from rewardkit.training import RewardConfig
    from rewardkit.training.curves import Curves

COMMIT_TAG = "rewardkit.commit"
CURVE_PREFIX = "curve/"
_BATCH = 1000  # mlflow's MAX_METRICS_PER_BATCH; params go 100 at a time (MAX_PARAMS_TAGS_PER_BATCH)
_NAME_BAD = re.compile(r"[^/\w.\- ]")  # what MLflow accepts in a metric or param name, on every OS


def mlflow_requested(flag: bool | None) -> bool:
    """Whether training logs to MLflow: per ``--mlflow``/``--no-mlflow``, else if ``MLFLOW_TRACKING_URI`` is set."""
    return flag if flag is not None else bool(os.environ.get("MLFLOW_TRACKING_URI"))


@dataclass
class MlflowTracking:
    """Where a training run logs, and its MLflow run once started (a context manager around training).

    Args:
        experiment: The MLflow experiment, created when missing.
        tracking_uri: The tracking server or store, e.g. ``sqlite:///mlflow.db`` or
            ``http://host:5000``; None: ``MLFLOW_TRACKING_URI``, else mlflow's default.

    Raises:
        ConfigError: On construction, when mlflow is not installed; from a method, when MLflow
            refuses a call (an unknown URI scheme, a store it cannot open or reach); the
            message names the tracking URI and gives MLflow's reason on one line.
    """

    experiment: str = "rewardkit"
    tracking_uri: str | None = None
    run_id: str | None = None
    experiment_id: str | None = None

    def __post_init__(self) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise ConfigError("--mlflow (or MLFLOW_TRACKING_URI) needs the mlflow package: pip install mlflow; "
                              "or pass --no-mlflow")
        self._client: Any = None

    def start(self, config: RewardConfig, run_name: str) -> None:
        """Create the run (and the experiment when missing) and log ``config`` as params."""
        from mlflow import MlflowClient
        from mlflow.entities import Param
        from mlflow.tracking import get_tracking_uri

        # the environment first: a URI set in this process by mlflow.set_tracking_uri (e.g. by a library the
        # user's script used) would otherwise win over the MLFLOW_TRACKING_URI the user gave this run
        self.tracking_uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or get_tracking_uri()
        with self._refusals():
            self._client = client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment = client.get_experiment_by_name(self.experiment)
            self.experiment_id = (experiment.experiment_id if experiment is not None
                                  else client.create_experiment(self.experiment))
            self.run_id = client.create_run(self.experiment_id, run_name=run_name).info.run_id
            params = [Param(_name(k), _param_value(v)) for k, v in config.to_dict().items()]
            for i in range(0, len(params), 100):
                client.log_batch(self.run_id, params=params[i:i + 100])

    def log_results(self, metrics: dict[str, Any], curves: Curves, run_dir: Path) -> None:
        """Log the commit's ``metrics``, the curves per optimizer step, and the curve files found in ``run_dir``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        points = [Metric(_name(k), float(v), now, 0) for k, v in metrics.items() if isinstance(v, int | float)]
        for row in curves.rows:
            step = int(row["step"])
            points += [Metric(CURVE_PREFIX + k, float(v), now, step) for k, v in row.items() if k != "step"]
        with self._refusals():
            for i in range(0, len(points), _BATCH):
                self._client.log_batch(self.run_id, metrics=points[i:i + _BATCH])
            for name in ("curves.csv", "curves.png"):
                if (run_dir / name).is_file():
                    self._client.log_artifact(self.run_id, str(run_dir / name))

    def reference(self) -> dict[str, str]:
        """What a commit records of the run: ``{"run_id", "experiment_id", "tracking_uri"}``."""
        return {"run_id": self.run_id, "experiment_id": self.experiment_id, "tracking_uri": self.tracking_uri}

    def tag_commit(self, commit_id: str) -> None:
        """Tag the run ``rewardkit.commit`` = ``commit_id`` (after the commit has landed)."""
        with self._refusals(f"commit {commit_id[:10]} landed, but tagging its MLflow run failed: "):
            self._client.set_tag(self.run_id, COMMIT_TAG, commit_id)

    @contextlib.contextmanager
    def _refusals(self, prefix: str = "") -> Iterator[None]:
        """MLflow's errors inside, as a one-line :class:`ConfigError` naming the tracking URI."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            reason = (exc.message.strip().splitlines() or ["no reason given"])[0]
            raise ConfigError(f"{prefix}MLflow at {self.tracking_uri}: {reason}") from exc

    def __enter__(self) -> MlflowTracking:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """End the run, if one was started: FINISHED, or FAILED when training or the commit raised."""
        if self.run_id is None:
            return
        if kind is None:
            with self._refusals():
                self._client.set_terminated(self.run_id, status="FINISHED")
        else:  # the error that ended the run is the one to report, not a failure to mark it
            with contextlib.suppress(Exception):
                self._client.set_terminated(self.run_id, status="FAILED")


def _name(key: str) -> str:
    """``key`` as an MLflow name: characters MLflow refuses (a subset name's ``+``, say) become ``_``."""
    return _NAME_BAD.sub("_", key)


def _param_value(value: Any) -> str:
    """A config value as MLflow stores params: a string, lists comma-joined, None as ``None``."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
