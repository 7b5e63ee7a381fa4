"""Search hyperparameters with Ray Tune (ASHA) over Ray Train runs; write the best config.

``python -m workflows.tune --model NAME --data STORE --out DIR [--config YAML] [--samples N]
[--set KEY=VALUE] [--address A]``

Ray 2.60's pattern for tuning distributed training: each Tune trial is a small *driver function*
(0.1 CPU by default) that builds and fits a TorchTrainer through ``workflows.core.training.run_training``;
``TuneReportCallback`` forwards every epoch's ``ray.train.report`` metrics to Tune, so the ASHA
scheduler can stop weak trials after any epoch, which kills the trial's driver and with it the
Train run it owns. The search space lives in config (``workflows/configs/tune-<family>.yaml``).

Known limit (Ray 2.60): a stopped trial's training placement group is removed by Ray Train's
detached cleaner actor, which finds its cluster by auto-detection; on a host running several Ray
instances it can query the wrong one, and the group then stays reserved until Ray shuts down.

Outputs in ``--out``: ``tune/`` (Tune's experiment), ``trials/<run>/`` (each trial's Train run:
checkpoints, metrics.jsonl), ``trials.csv`` (one row per trial), ``tune.yaml`` (this search) and
``best_config.yaml``: a TrainConfig that ``facsflow train --config`` takes as it is.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from components import storage
from components.configuration import ConfigError, apply_overrides, dump_yaml, flatten_fields, from_dict, to_dict
from workflows.core.train_config import TrainConfig

log = logging.getLogger("facsflow.tune")

__all__ = ["ParamSpace", "AshaConfig", "SearchConfig", "apply_params", "trial_resources",
           "concurrent_trials", "trial_run_name", "trial_driver", "run_tune", "default_config_path",
           "build_parser", "config_from_args", "main"]

CONFIG_DIR = Path(__file__).parent / "configs"

# Metrics every epoch's report of workflows.train carries (the ones worth scheduling on).
TRAIN_METRICS = ("val_mean_f1", "val_accuracy", "val_bce", "best_val_mean_f1", "train_loss")

# Fields a search may not vary: resources (concurrency is computed from them), ASHA's budget
# (train.epochs is max_t), where things live, and the split (trials must be compared on the
# same validation subjects).
FIXED_FIELDS = ("data", "out", "name", "epochs", "workers", "gpu", "worker_cpus", "data_cpus")
FIXED_PREFIXES = ("split.",)


@dataclass(frozen=True)
class ParamSpace:
    """One hyperparameter's distribution."""

    kind: Literal["loguniform", "uniform", "choice", "randint"]
    """loguniform / uniform: a float in [low, high]; randint: an integer in [low, high] (both
    included); choice: one of ``values``."""
    low: float = 0.0
    """Lower bound (loguniform, uniform, randint)."""
    high: float = 0.0
    """Upper bound (loguniform, uniform, randint)."""
    values: tuple[Any, ...] = ()
    """Candidates (choice)."""

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.values:
                raise ValueError("choice needs a non-empty 'values' list")
            return
        if not self.low < self.high:
            raise ValueError(f"{self.kind} needs low < high, got low={self.low}, high={self.high}")
        if self.kind == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        if self.kind == "randint" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ValueError(f"randint needs integer bounds, got {self.low}..{self.high}")

    def sampler(self) -> Any:
        """The Ray Tune search-space object for this distribution."""
        from ray import tune

        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        return tune.randint(int(self.low), int(self.high) + 1)  # Ray's upper bound is exclusive

    def example(self) -> Any:
        """A value from the space (the lower end), to check a config before any trial starts."""
        if self.kind == "choice":
            return self.values[0]
        return int(self.low) if self.kind == "randint" else self.low


@dataclass(frozen=True)
class AshaConfig:
    """Asynchronous successive halving (ASHA): which trials go on to more epochs."""

    grace_period: int = 1
    """Epochs every trial runs before it can be stopped (the first rung)."""
    reduction_factor: float = 3.0
    """At each rung (grace_period x reduction_factor^k epochs) only the best 1/reduction_factor
    of the trials that reached it go on."""

    def __post_init__(self) -> None:
        if self.grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {self.grace_period}")
        if self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be >= 2, got {self.reduction_factor}")


@dataclass
class SearchConfig:
    """One hyperparameter search; saved as ``<out>/tune.yaml``."""

    train: TrainConfig = field(default_factory=TrainConfig)
    """The run every trial starts from; ``train.epochs`` is ASHA's budget (max_t) per trial."""
    space: dict[str, ParamSpace] = field(default_factory=dict)
    """Dotted TrainConfig field -> distribution, e.g. optim.lr, batch_size, model_kwargs.dropout."""
    samples: int = 8
    """Trials (configurations sampled from the space)."""
    metric: str = "val_mean_f1"
    """Per-epoch metric ASHA compares and the best trial is chosen by."""
    mode: Literal["max", "min"] = "max"
    """Whether a larger or smaller metric is better."""
    asha: AshaConfig = field(default_factory=AshaConfig)
    """Early stopping of weak trials."""
    driver_cpus: float = 0.1
    """CPUs reserved for each trial's driver function (it only waits on its TorchTrainer)."""
    max_concurrent_trials: int = 0
    """Upper bound on trials at once (0: as many as the cluster's resources fit)."""
    seed: int = 0
    """Seed of the search (which configurations are sampled); training uses train.seed."""
    out: str = ""
    """Results folder (local path or URI)."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.driver_cpus <= 0:
            raise ValueError(f"driver_cpus must be > 0, got {self.driver_cpus}")
        if self.max_concurrent_trials < 0:
            raise ValueError(f"max_concurrent_trials must be >= 0, got {self.max_concurrent_trials}")
        if self.metric not in TRAIN_METRICS:
            raise ValueError(f"metric {self.metric!r} is not reported by training; one of {list(TRAIN_METRICS)}")
        if not self.space:
            raise ValueError("space: name at least one hyperparameter to search")
        leaves = {name for name, _, _ in flatten_fields(TrainConfig)}
        for key in self.space:
            if key in FIXED_FIELDS or key.startswith(FIXED_PREFIXES):
                raise ValueError(f"space.{key}: fixed during a search (set it under train: instead)")
            if key not in leaves and not (key.startswith("model_kwargs.") and len(key) > len("model_kwargs.")):
                raise ValueError(f"space.{key}: not a TrainConfig field (nor model_kwargs.<name>)")


def apply_params(base: dict[str, Any], params: dict[str, Any]) -> TrainConfig:
    """TrainConfig from a plain base mapping with dotted ``params`` set (types checked).

    The same override path as the command line's ``--set`` (``apply_overrides``), given typed
    values instead of YAML text.
    """
    return from_dict(TrainConfig, apply_overrides(to_dict(base), params), where="trial config")


def trial_resources(cfg: TrainConfig, driver_cpus: float) -> dict[str, float]:
    """What one trial needs at once: its driver, its training workers and its data pipeline.

    The data pipeline counts whole CPUs (at least one): Ray Data 2.60 gets its budget from
    Ray's autoscaling coordinator, which splits the CPUs training leaves free among concurrent
    pipelines in whole units (``amount // n``), so two trials sharing one spare CPU would each
    get zero and wait forever.
    """
    data = float(max(1, math.ceil(cfg.data_cpus)))
    return {"CPU": driver_cpus + cfg.workers * cfg.worker_cpus + data,
            "GPU": float(cfg.workers) if cfg.gpu else 0.0}


def concurrent_trials(cluster: dict[str, float], per_trial: dict[str, float], samples: int,
                      cap: int = 0) -> int:
    """Trials that fit the cluster at once (at most ``samples``, and ``cap`` when > 0).

    Tune itself only sees each driver's small CPU share; without this bound it would start
    drivers whose TorchTrainers then wait for workers, and whose data pipelines starve.
    """
    fits = [math.floor(cluster.get(k, 0.0) / need + 1e-9) for k, need in per_trial.items() if need > 0]
    n = min(fits + [samples] + ([cap] if cap > 0 else []))
    if n < 1:
        from workflows.core.runtime import UserError

        have = {k: cluster.get(k, 0.0) for k in per_trial}
        raise UserError(f"one trial needs {per_trial} (driver + workers x worker_cpus + data pipeline) "
                        f"but the cluster has {have}: lower train.worker_cpus / train.workers")
    return n


def trial_run_name(cfg: TrainConfig, trial_id: str) -> str:
    """The Train run name of a trial: ``<model>-fold<k>-<trial id>`` (under <out>/trials/)."""
    return f"{cfg.run_name()}-{trial_id}"


def _trial_dirname(trial: Any) -> str:
    return str(trial.trial_id)


def trial_driver(config: dict[str, Any], base: dict[str, Any]) -> None:
    """Tune trainable: apply the trial's hyperparameters, then build and fit its TorchTrainer.

    Every epoch the Train workers report; TuneReportCallback hands the metrics to this trial, so
    ASHA's decision to stop it lands between epochs.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from workflows.core.training import run_training

    cfg = apply_params(base, config)
    cfg = replace(cfg, name=trial_run_name(cfg, tune.get_context().get_trial_id()))
    run_training(cfg, callbacks=[TuneReportCallback()])


def _preflight(search: SearchConfig) -> int:
    """Check one configuration from the space builds; return ASHA's max_t (epochs reported)."""
    from components.models.registry import build_model
    from components.store.splits import store_info
    from workflows.core.runtime import UserError
    from workflows.core.training import epoch_schedule

    info = store_info(search.train.data)
    example = {k: p.example() for k, p in search.space.items()}
    try:
        cfg = apply_params(to_dict(search.train), example)
        model = build_model(cfg.model, info["aus"], **cfg.model_kwargs)
    except (ConfigError, TypeError, ValueError, KeyError) as e:
        raise UserError(f"the search space does not give a valid run (tried {example}): {e}") from None
    epochs = len(epoch_schedule(model, cfg))
    if search.asha.grace_period > epochs:
        raise UserError(f"asha.grace_period ({search.asha.grace_period}) is more than the "
                        f"{epochs} epochs a trial runs")
    return epochs


def _absolute(uri: str) -> str:
    return uri if storage.is_remote(uri) or not uri else os.path.abspath(uri)


def run_tune(search: SearchConfig) -> dict[str, Any]:
    """Run the search on the connected Ray cluster; write trials.csv and best_config.yaml."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from workflows.core.runtime import UserError

    out = _absolute(search.out)
    # Trial drivers run in other processes (and on other nodes): no relative paths.
    base = replace(search.train, data=_absolute(search.train.data), out=storage.join(out, "trials"), name="")
    search = replace(search, train=base, out=out)
    experiment = storage.join(out, "tune")
    if storage.exists(storage.join(out, "best_config.yaml")):
        raise UserError(f"{out} already holds a finished search (best_config.yaml): choose another --out")
    if storage.exists(experiment):
        raise UserError(f"{experiment} exists (an interrupted search?): delete it or choose another --out")
    max_t = _preflight(search)
    per_trial = trial_resources(base, search.driver_cpus)
    concurrent = concurrent_trials(ray.cluster_resources(), per_trial, search.samples,
                                   search.max_concurrent_trials)
    log.info("%d trials of %s, at most %d at once (%s each), ASHA on %s (%s) over %d epochs",
             search.samples, base.model, concurrent, per_trial, search.metric, search.mode, max_t)
    storage.makedirs(out)
    _write_yaml(search, storage.join(out, "tune.yaml"))

    trainable = tune.with_resources(tune.with_parameters(trial_driver, base=to_dict(base)),
                                    {"CPU": search.driver_cpus})
    tuner = tune.Tuner(
        trainable,
        param_space={k: p.sampler() for k, p in search.space.items()},
        tune_config=tune.TuneConfig(
            metric=search.metric, mode=search.mode, num_samples=search.samples,
            trial_dirname_creator=_trial_dirname,
            # Tune ignores TuneConfig.max_concurrent_trials when search_alg is a generator
            # instance (it only wraps Searchers): the generator carries the bound itself.
            search_alg=BasicVariantGenerator(random_state=search.seed, max_concurrent=concurrent),
            # stop_last_trials=False: a trial that reaches max_t ends on its own, so its Train
            # run finishes (run.json, final checkpoints) instead of being killed at the last report.
            scheduler=ASHAScheduler(time_attr="training_iteration", max_t=max_t,
                                    grace_period=search.asha.grace_period,
                                    reduction_factor=search.asha.reduction_factor, stop_last_trials=False)),
        run_config=tune.RunConfig(name="tune", storage_path=out,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    results = tuner.fit()
    rows = _trial_rows(results, search, max_t)
    storage.write_text(storage.join(out, "trials.csv"), _csv(rows, list(search.space)))
    done = [r for r in rows if r["status"] != "error" and not math.isnan(r[f"best_{search.metric}"])]
    if not done:
        raise RuntimeError(f"every trial failed; see {storage.join(out, 'trials.csv')}: "
                           + "; ".join(str(r["error"]) for r in rows)[:2000])
    # Best by the best epoch of each trial (scope 'all'): training keeps the best-k checkpoints by
    # validation, so a trial's best epoch is what training with its config delivers.
    pick = max if search.mode == "max" else min
    best_row = pick(done, key=lambda r: r[f"best_{search.metric}"])
    best = replace(apply_params(to_dict(base), {k: best_row[k] for k in search.space}),
                   out=storage.join(out, "runs"), name="")
    header = (f"# Best of {len(rows)} trials by {search.metric} ({search.mode}): "
              f"{best_row[f'best_{search.metric}']:.4f}, trial {best_row['trial_id']} ({best_row['run_dir']}).\n"
              f"# Train it: facsflow train --config {storage.join(out, 'best_config.yaml')}\n")
    _write_yaml(best, storage.join(out, "best_config.yaml"), header)
    return {"out": out, "best_config": storage.join(out, "best_config.yaml"),
            "trials_csv": storage.join(out, "trials.csv"), "best_trial": best_row, "trials": rows,
            "max_t": max_t, "concurrent": concurrent}


def _trial_rows(results: Any, search: SearchConfig, max_t: int) -> list[dict[str, Any]]:
    """One row per trial: id, status, epochs run, hyperparameters, final and best metrics."""
    rows = []
    for res in results:
        metrics = res.metrics or {}
        trial_id = Path(res.path).name  # Tune's folder of the trial is named by its id
        params = {k: (res.config or {})[k] for k in search.space}
        history = res.metrics_dataframe
        values = (history[search.metric].dropna().tolist()
                  if history is not None and search.metric in history else [])
        cfg = apply_params(to_dict(search.train), params)
        run_dir = storage.join(search.train.out, trial_run_name(cfg, trial_id))
        epochs = int(metrics.get("training_iteration", 0) or 0)
        if res.error is not None:
            status = "error"
        elif storage.exists(storage.join(run_dir, "run.json")):
            status = "completed"  # ran to max_t, or training's own early stopping ended it
        else:
            status = "stopped_early"  # ASHA stopped it: its Train run never finished
        row: dict[str, Any] = {"trial_id": trial_id, "status": status, "epochs_run": epochs}
        row.update(params)
        for name in TRAIN_METRICS:
            row[name] = metrics.get(name, float("nan"))
        best = max if search.mode == "max" else min
        row[f"best_{search.metric}"] = best(values) if values else float("nan")
        row["run_dir"] = run_dir
        row["error"] = "" if res.error is None else str(res.error).splitlines()[0][:300]
        rows.append(row)
    return sorted(rows, key=lambda r: r["trial_id"])


def _csv(rows: list[dict[str, Any]], params: list[str]) -> str:
    metric_cols = [k for k in rows[0] if k not in ("trial_id", "status", "epochs_run", *params, "run_dir", "error")] \
        if rows else []
    cols = ["trial_id", "status", "epochs_run", *params, *metric_cols, "run_dir", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_yaml(obj: Any, uri: str, header: str = "") -> None:
    """Commented YAML of a dataclass, to a local path or a URI."""
    storage.write_text(uri, header + dump_yaml(obj))


def default_config_path(model: str) -> Path:
    """``workflows/configs/tune-<family>.yaml`` for a registered model."""
    from components.models.registry import model_info
    from workflows.core.runtime import UserError

    try:
        family = model_info(model).family
    except KeyError as e:
        raise UserError(str(e.args[0])) from None
    path = CONFIG_DIR / f"tune-{family}.yaml"
    if not path.is_file():
        raise UserError(f"no search space for family {family!r} ({path} missing): pass --config YAML")
    return path


def build_parser() -> argparse.ArgumentParser:
    """Flags generated from ``SearchConfig`` (``--samples``, ``--train.optim.lr``, ...);
    ``--model`` and ``--data`` set ``train.model`` and ``train.data``."""
    from workflows.core.stage_cli import stage_parser

    return stage_parser(
        SearchConfig, "facsflow tune",
        aliases={"train.model": ["--model"], "train.data": ["--data"]},
        description="Search hyperparameters of a registered AU model with Ray Tune: each trial is a Ray "
                    "Train run; ASHA stops weak trials between epochs. Writes <out>/trials.csv and "
                    "<out>/best_config.yaml (for `facsflow train --config`). Without --config the "
                    "model family's workflows/configs/tune-<family>.yaml is read.")


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    """SearchConfig from the command line: --config (or the model family's), --set, then the flags."""
    from workflows.core.stage_cli import stage_config
    from workflows.core.runtime import UserError

    model = getattr(args, "train.model")
    if not args.config and not model:
        raise UserError("tune needs --model NAME (or --config YAML)")
    if not args.config:
        args.config = str(default_config_path(model))
    return stage_config(args, required=("train.data", "out"))


def main(argv: "list[str] | None" = None) -> int:
    from workflows.core.runtime import configure_logging, ray_session

    args = build_parser().parse_args(argv)
    configure_logging()
    search = config_from_args(args)
    from components.store.splits import store_info

    store_info(search.train.data)  # a wrong --data fails here, before Ray starts
    with ray_session(args.address):
        summary = run_tune(search)
    metric = f"best_{search.metric}"
    for r in summary["trials"]:
        print(f"trial {r['trial_id']}: {r['status']:<13} {r['epochs_run']} epoch(s)  {search.metric} "
              f"{r[metric]:.4f}  " + " ".join(f"{k}={r[k]}" for k in search.space))
    print(f"best trial {summary['best_trial']['trial_id']} ({search.metric} "
          f"{summary['best_trial'][metric]:.4f}); trials: {summary['trials_csv']}; "
          f"best config: {summary['best_config']} (facsflow train --config {summary['best_config']})")
    return 0


if __name__ == "__main__":
    from workflows.core.runtime import run_main

    raise SystemExit(run_main(main))
