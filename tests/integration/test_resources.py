"""A stage that asks for more than the cluster has stops within seconds with an error that says
what to change (it used to wait forever: Ray Data's read tasks never got a CPU); an ask that
fits once worker CPUs shrink to the documented floor runs with the smaller share."""

from __future__ import annotations

import time

import pytest

from workflows.core.runtime import MIN_WORKER_CPUS, UserError, check_resources, run_main



@pytest.mark.parametrize("ask, expected", [
    # (workers, CPUs per worker, pipeline CPUs) on 2 CPUs → CPUs per worker
    ((2, 0.5, 0.25), 0.5),    # the demo's config fits as asked: 1.25 of 2
    ((2, 1.0, 0.5), 0.75),    # the defaults, 2.5 of 2: (2 - 0.5) / 2
    ((3, 1.0, 0.5), 0.5),     # (2 - 0.5) / 3 = 0.5
    ((4, 1.0, 0.25), 0.4),    # (2 - 0.25) / 4 = 0.4375, rounded down to 0.05
])
def test_fit_rule(ask, expected) -> None:
    assert check_resources("train", {"CPU": 2.0}, *ask[:2], pipeline_cpus=ask[2]) == pytest.approx(expected)


def test_no_fit_below_the_floor_or_without_gpus() -> None:
    with pytest.raises(UserError, match=r"8 worker\(s\) x 1 CPU \+ 0.5 CPU for its data pipeline = 8.5 CPUs; "
                                        r"the Ray cluster has 2: it would wait forever"):
        check_resources("train", {"CPU": 2.0}, 8, 1.0, pipeline_cpus=0.5)
    assert (2.0 - 0.5) / 8 < MIN_WORKER_CPUS
    with pytest.raises(UserError, match=r"2 worker\(s\) x 1 GPU = 2 GPUs; the Ray cluster has 0"):
        check_resources("train", {"CPU": 16.0}, 2, 1.0, gpus_per_worker=1.0)
    with pytest.raises(UserError, match="it would wait forever"):
        check_resources("preprocess", {"CPU": 2.0}, 1, 4.0, fit=False)


def test_train_asking_too_much_stops_in_seconds(ray_local, tmp_path, capsys) -> None:
    from workflows import train

    t0 = time.perf_counter()
    rc = run_main(train.main, ["--model", "baseline_mobilenetv3_112", "--data", str(tmp_path / "store"),
                               "--out", str(tmp_path / "runs"), "--workers", "8"])
    took = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "train asks for 8 worker(s) x 1 CPU + 0.5 CPU for its data pipeline = 8.5 CPUs; the Ray cluster has 2" in err
    assert "--workers" in err and "worker_cpus" in err
    assert took < 30, f"the refusal took {took:.1f} s"
    assert not (tmp_path / "runs").exists()


def test_preprocess_actor_larger_than_the_cluster_stops_in_seconds(ray_local, tmp_path, capsys) -> None:
    from workflows import preprocess

    t0 = time.perf_counter()
    rc = run_main(preprocess.main, ["--dataset", "manifest", "--root", str(tmp_path), "--out", str(tmp_path / "s"),
                                    "--set", "actor_cpus=3"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "preprocess asks for 1 worker(s) x 3 CPU = 3 CPUs; the Ray cluster has 2" in err and "actor_cpus" in err
    assert time.perf_counter() - t0 < 30
