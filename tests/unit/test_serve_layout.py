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


STAGED = ["AUService", "Combiner", "FacePipeline", "Member0", "Member1", "VideoJobs"]
FUSED = ["AUService", "VideoJobs"]
"""Either layout has the one VideoJobs replica that runs /v1/jobs (workflows/serve/jobs.py)."""


@pytest.mark.parametrize("args, expected", [
    ({"layout": "staged"}, STAGED),
    ({"layout": "fused"}, FUSED),
    ({}, FUSED),                                          # auto, members without a GPU: fused
    ({"member_gpus": 0.5}, STAGED),                       # auto, members on GPUs: staged
    ({"layout": "fused", "member_gpus": 0.5}, FUSED),
])
def test_layout_decides_the_deployments(args, expected) -> None:
    assert _deployments(**args) == expected


def test_fused_ingress_carries_the_stages_arguments_and_gpu_share() -> None:
    from ray.serve._private.build_app import build_app as build_serve_app

    from workflows.serve.app import build_app

    app = build_app({"ensemble": "/e", "members": 2, "layout": "fused", "member_gpus": 0.25,
                     "max_batch_size": 8, "image_faces": {"detector": "mtcnn", "policy": "all"}})
    dep, jobs = sorted(build_serve_app(app, name="facsflow").deployments, key=lambda d: d.name)
    assert dep.ray_actor_options["num_gpus"] == 0.5  # both members' shares, on one replica
    assert jobs.name == "VideoJobs" and jobs.num_replicas == 1
    stages, settings = dep.init_args[:2]
    assert type(stages).__name__ == "FusedStages" and settings["slots"] == 2
    assert (stages.member_args.max_batch_size, stages.member_args.use_gpu) == (8, True)
    assert settings["image_faces"] == {"detector": "mtcnn", "policy": "all"}


def test_fused_says_which_scaling_it_does_not_use(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="facsflow.serve"):
        _deployments(layout="fused", faces={"max_replicas": 4})
    assert "faces scaling is not used" in caplog.text and "layout: staged" in caplog.text


def test_unknown_layout_is_refused_with_the_choices() -> None:
    from workflows.serve.app import AppArgs

    with pytest.raises(ValueError, match="'auto', 'staged' or 'fused'"):
        AppArgs(ensemble="/e", layout="merged")


def test_one_member_object_serves_every_member_without_reloading(tmp_path) -> None:
    """The fused layout's member object (``slot`` None): every member of the manifest loaded
    once and kept, each request answered by the member it names, the health check runs them all.
    ``@serve.batch`` keeps one queue per method per process and runs a batch on its first
    request's object, so the fused ingress holds one such object for every slot."""
    from dataclasses import asdict

    from components.ensemble import EnsembleManifest
    from tests.serving_fixtures import IMAGE_MEMBER, VIDEO_MEMBER, make_ensemble
    from workflows.serve.deployments import MemberModel, probe_batch
    from workflows.serve.stages import MemberArgs

    ens = str(make_ensemble(tmp_path / "e", [IMAGE_MEMBER, ("img-2", IMAGE_MEMBER[1], {}), VIDEO_MEMBER]))
    man = EnsembleManifest.load(ens)
    unbatched = MemberArgs(max_batch_size=0)  # no @serve.batch: that needs a Serve replica
    every = MemberModel.func_or_class(ens, None, unbatched)
    one = MemberModel.func_or_class(ens, 1, unbatched)
    assert len(every._cache) == 3 and len(one._cache) == 1
    loaded = dict(every._cache)
    batch = probe_batch(112, (1, 2))
    for _ in range(2):
        outs = [every._run([{"member": asdict(m), "aus": list(man.aus), "steps": [1, 2], **batch}])[0]
                for m in man.members]
    assert dict(every._cache) == loaded, "a member was loaded again"
    ref = one._run([{"member": asdict(man.members[1]), "aus": list(man.aus), "steps": [1, 2], **batch}])[0]
    assert (outs[1]["probs"] == ref["probs"]).all() and not (outs[0]["probs"] == ref["probs"]).all()
    every.check_health()


@pytest.mark.parametrize("layout, gpus, expected", [("auto", 0.0, "fused"), ("auto", 0.5, "staged"),
                                                     ("staged", 0.0, "staged"), ("fused", 1.0, "fused")])
def test_the_layout_a_config_is_resolved_to(layout, gpus, expected) -> None:
    """What ``facsflow serve`` prints and ``python -m cluster.serve_config`` writes into args."""
    from cluster.serve_config import resolved_layout
    from workflows.serve.app import Scaling

    assert resolved_layout(layout, Scaling(num_gpus=gpus)) == expected
