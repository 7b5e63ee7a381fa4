"""Which deployments a Serve app is built with, per ``AppArgs.layout`` (built, not run: binding
arguments loads no model)."""

from __future__ import annotations

import logging

import pytest


def _deployments(**args) -> list[str]:
    from ray.serve._private.build_app import build_app as build_serve_app

    from workflows.serve.app import build_app

    built = build_serve_app(build_app({"ensemble": "/no/such/ensemble", "members": 2, **args}), name="facsflow")
    return sorted(d.name for d in built.deployments)


STAGED = ["AUService", "Combiner", "FacePipeline", "Member0", "Member1"]


@pytest.mark.parametrize("args, expected", [
    ({"layout": "staged"}, STAGED),
    ({"layout": "fused"}, ["AUService"]),
    ({}, ["AUService"]),                                  # auto, members without a GPU: fused
    ({"member_gpus": 0.5}, STAGED),                       # auto, members on GPUs: staged
    ({"layout": "fused", "member_gpus": 0.5}, ["AUService"]),
])
def test_layout_decides_the_deployments(args, expected) -> None:
    assert _deployments(**args) == expected


def test_fused_ingress_carries_the_stages_arguments_and_gpu_share() -> None:
    from ray.serve._private.build_app import build_app as build_serve_app

    from workflows.serve.app import build_app

    app = build_app({"ensemble": "/e", "members": 2, "layout": "fused", "member_gpus": 0.25,
                     "max_batch_size": 8, "image_faces": {"detector": "mtcnn", "policy": "all"}})
    (dep,) = build_serve_app(app, name="facsflow").deployments
    assert dep.ray_actor_options["num_gpus"] == 0.5  # both members' shares, on one replica
    settings = dep.init_args[3]
    assert settings["slots"] == 2 and settings["fused"]["member"] == [8, 0.005, True]
    assert settings["fused"]["faces"][0]["detector"] == "mtcnn"


def test_fused_says_which_scaling_it_does_not_use(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="facsflow.serve"):
        _deployments(layout="fused", faces={"max_replicas": 4})
    assert "faces scaling is not used" in caplog.text and "layout: staged" in caplog.text


def test_unknown_layout_is_refused_with_the_choices() -> None:
    from workflows.serve.app import AppArgs

    with pytest.raises(ValueError, match="'auto', 'staged' or 'fused'"):
        AppArgs(ensemble="/e", layout="merged")
