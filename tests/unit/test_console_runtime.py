"""Console plumbing of workflows.core.runtime and the driver's epoch line, without starting Ray:
``--verbose`` handling, the stop signals' exit path, the filter on Ray's console handlers, the
HTTP client's request lines, and the epoch line's figures and ETA."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from workflows.core.runtime import (QUIET_CLIENT_LOGGERS, VERBOSE_ENV, StopRequested, _RayConsoleFilter,
                               configure_logging, run_main)



def _record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_verbose_flag_is_taken_out_and_restored(monkeypatch) -> None:
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    seen = {}

    def stage(argv):
        seen["argv"], seen["env"] = list(argv), os.environ.get(VERBOSE_ENV)
        return 0

    assert run_main(stage, ["--out", "x", "--verbose"]) == 0
    assert seen == {"argv": ["--out", "x"], "env": "1"}
    assert VERBOSE_ENV not in os.environ


def test_sigterm_unwinds_like_ctrl_c(capsys) -> None:
    cleaned = []

    def stage(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)   # run_main's handler turns it into StopRequested
            signal.pause()
        finally:
            cleaned.append(True)

    assert run_main(stage, []) == 130
    assert cleaned == [True]
    assert capsys.readouterr().err.strip() == "facsflow: interrupted (SIGTERM)"
    assert isinstance(StopRequested(signal.SIGINT), KeyboardInterrupt)


@pytest.mark.parametrize("name, level, msg, shown", [
    ("ray._private.authentication.authentication_token_setup", logging.WARNING,
     "Token authentication is enabled for this Ray cluster.", False),      # named harmless
    ("ray.data._internal.x", logging.WARNING, "Progress bars disabled. To enable", False),
    ("ray.data._internal.x", logging.WARNING, "Cluster resources are not enough", True),  # not named: shown
    ("ray.data._internal.x", logging.INFO, "Execution plan of Dataset", False),            # below WARNING
    ("ray._private.worker", logging.ERROR, "Unhandled error: ray::_StatsActor.update_execution_metrics() "
     "KeyError: 'dataset_1'", False),                                       # named harmless error
    ("ray._private.worker", logging.ERROR, "Unhandled error: ray::UnitProcessor() ValueError", True),
])
def test_ray_console_filter(monkeypatch, name, level, msg, shown) -> None:
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert _RayConsoleFilter().filter(_record(name, level, msg)) is shown
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert _RayConsoleFilter().filter(_record(name, level, msg)) is True


def test_ray_console_filter_passes_other_loggers(monkeypatch) -> None:
    # The filter can end up on a handler Ray shares with the application (a root handler,
    # pytest's caplog); facsflow's INFO progress lines must still pass it.
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    f = _RayConsoleFilter()
    assert f.filter(_record("facsflow.preprocess", logging.INFO, "preprocess: 2/2 units")) is True
    assert f.filter(_record("raylet_like_app", logging.INFO, "x")) is True
    assert f.filter(_record("ray", logging.INFO, "x")) is False


@pytest.mark.parametrize("verbose, shown", [(False, False), (True, True)], ids=["quiet", "verbose"])
def test_http_client_request_lines_stay_off_the_console(monkeypatch, caplog, verbose, shown) -> None:
    """The demo's request to its served ensemble logged "HTTP Request: POST ..." (httpx, INFO)."""
    import httpx

    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    if verbose:
        monkeypatch.setenv(VERBOSE_ENV, "1")
    levels = {name: logging.getLogger(name).level for name in QUIET_CLIENT_LOGGERS}
    root_handlers = list(logging.getLogger().handlers)
    try:
        logging.getLogger("httpx").setLevel(logging.INFO)   # as noisy as httpx gets by default under INFO
        configure_logging()
        client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json={})))
        with client:
            client.post("http://127.0.0.1:8765/v1/predict", content=b"jpeg")
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger().handlers[:] = root_handlers
    assert ("HTTP Request: POST" in caplog.text) is shown, caplog.text


def test_epoch_line() -> None:
    from workflows.core.train_callbacks import epoch_line

    m = {"epoch": 1, "train_loss": 0.61234, "val_mean_f1": 0.4321, "best_val_mean_f1": 0.5,
         "samples_per_s": 37.25, "epoch_seconds": 42.4, "stage": "train"}
    # 4 epochs left at 42.4 s each: 169.6 s → 2:50.
    assert epoch_line("r", m, 6) == ("[r] epoch 2/6  loss 0.6123  val F1 0.432 (best 0.500)  37.2 samples/s  "
                                     "42 s  ETA 2:50")
    assert epoch_line("r", {**m, "stage": "rank", "epoch": 5}, 6).startswith("[r] epoch 6/6 (rank)  ")
    assert epoch_line("r", {**m, "epoch": 5}, 6).endswith("ETA 0:00")


def test_epoch_line_with_validation_thresholds() -> None:
    from workflows.core.train_callbacks import epoch_line

    m = {"epoch": 1, "train_loss": 0.61234, "val_mean_f1": 0.4321, "best_val_mean_f1": 0.5,
         "samples_per_s": 37.25, "epoch_seconds": 42.4, "stage": "train", "val_tuned_mean_f1": 0.48,
         "val_all_positive_f1": 0.3, "val_positive_rate": 0.2}
    assert epoch_line("r", m, 6) == ("[r] epoch 2/6  loss 0.6123  val F1 0.432 (best 0.500; 0.480 at val "
                                     "thresholds, all-positive 0.300)  37.2 samples/s  42 s  ETA 2:50")


def test_a_model_that_predicts_no_au_says_so() -> None:
    from workflows.core.train_callbacks import epoch_line, no_au_note, run_warning

    m = {"epoch": 0, "train_loss": 0.4, "val_mean_f1": 0.0, "best_val_mean_f1": 0.0, "samples_per_s": 30.0,
         "epoch_seconds": 10.0, "stage": "train", "val_tuned_mean_f1": 0.265, "val_all_positive_f1": 0.265,
         "val_positive_rate": 0.0}
    assert epoch_line("r", m, 2) == ("[r] epoch 1/2  loss 0.4000  val F1 0.000 — predicts no AU: no validation "
                                     "probability reaches 0.5; at the thresholds chosen on validation F1 0.265 "
                                     "vs all-positive 0.265 (best 0.000)  30.0 samples/s  10 s  ETA 0:10")
    assert no_au_note({**m, "val_positive_rate": 0.1}).startswith("no correct positive on validation at 0.5; ")
    assert no_au_note({**m, "val_mean_f1": 0.2}) == ""
    assert run_warning([m, {**m, "epoch": 1}], "none") == (
        "validation F1 stayed 0.000 in all 2 epochs — the model predicts no AU at 0.5; at the thresholds chosen "
        "on validation F1 0.265 vs all-positive 0.265: train with --set pos_weight=balanced (class-balanced loss)")
    # One epoch with F1 above 0 ends this warning; still no better than all-positive, it gets that one.
    assert run_warning([m, {**m, "val_mean_f1": 0.1}], "none").startswith("no epoch beat the all-positive")
    assert run_warning([m, {**m, "val_mean_f1": 0.1, "val_tuned_mean_f1": 0.3}], "none") == ""
    assert "train longer" in run_warning([m], "balanced")


def test_a_model_no_better_than_all_positive_says_so() -> None:
    """A constant output (to_sequence_small with balanced weights at 3e-3 on fold 2 of the learning
    set, 2026-12-07: 0.347 at validation thresholds in all 12 epochs, exactly all-positive) has a
    validation F1 above 0 at 0.5, so only the comparison with the all-positive predictor shows it."""
    from workflows.core.train_callbacks import run_warning

    flat = {"epoch": 0, "val_mean_f1": 0.21, "val_tuned_mean_f1": 0.3471, "val_all_positive_f1": 0.3468,
            "stage": "train"}
    warning = run_warning([flat, {**flat, "epoch": 1, "val_tuned_mean_f1": 0.30}], "balanced")
    assert warning == ("no epoch beat the all-positive predictor on validation (best F1 at the validation "
                       "thresholds 0.347 vs all-positive 0.347, 2 epochs): the model learned nothing the AU base "
                       "rates do not give; train longer, at a lower learning rate, from pretrained weights or with "
                       "light augmentation")
    assert run_warning([flat, {**flat, "epoch": 1, "val_tuned_mean_f1": 0.352}], "balanced") == ""
    # pairwise-rank: only the last step (mapping) makes AU outputs; its earlier steps do not count.
    rank = {**flat, "stage": "rank", "val_tuned_mean_f1": 0.5}
    mapping = {**flat, "epoch": 3, "stage": "mapping"}
    assert "no epoch of its mapping step beat" in run_warning([rank, mapping], "balanced")
    assert run_warning([rank, {**mapping, "val_tuned_mean_f1": 0.40}], "balanced") == ""
    # Validation F1 0 at 0.5 everywhere keeps its own warning.
    assert run_warning([{**flat, "val_mean_f1": 0.0}], "none").startswith("validation F1 stayed 0.000 in all 1 epochs")
