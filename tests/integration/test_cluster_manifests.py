"""Everything shipped in cluster/ parses, validates against the schema that will read it, and
agrees with pyproject's pins.

KubeRay manifests are checked against the CRDs' openAPIV3Schema (../shared/kuberay-crds, version
v1) the way `kubectl apply --validate=strict` would: unknown fields are errors unless the schema
preserves them. CEL rules (x-kubernetes-validations) are evaluated by the API server only and
are not checked here. The launcher YAML is checked against Ray's own ray-schema.json, and the
Serve config against Ray's ServeDeploySchema.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import json
import os
import re
import shlex
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml


ROOT = Path(__file__).resolve().parents[2]

CLUSTER = ROOT / "cluster"
CRDS = Path(os.environ.get("FACSFLOW_KUBERAY_CRDS", ROOT.parent / "shared" / "kuberay-crds"))
KUBERAY = sorted((CLUSTER / "kuberay").glob("*.yaml"))
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"


def _ray_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [m.group(1) for d in deps if (m := re.fullmatch(r"ray(?:\[[^\]]*\])?==([\w.]+)", d.replace(" ", "")))]
    assert len(pins) == 1, f"pyproject.toml must pin ray exactly once, found {pins}"
    return pins[0]


RAY = _ray_pin()


def _crd_dir() -> Path:
    if not CRDS.is_dir():
        reason = f"KubeRay CRDs not found at {CRDS}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (required under CI=true)")
        pytest.skip(reason)
    return CRDS


def _structural(schema: Any) -> Any:
    """A Kubernetes structural schema as plain JSON Schema, with kubectl's strict field checks."""
    if isinstance(schema, list):
        return [_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _structural(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string") and "anyOf" not in schema:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    if ("properties" in out and "additionalProperties" not in out
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _validator(kind: str) -> jsonschema.Draft7Validator:
    """The v1 schema of a CRD, parsed once per session (libyaml: the CRDs are 20k+ lines)."""
    crd_file = _crd_dir() / f"ray.io_{kind.lower()}s.yaml"
    crd = yaml.load(crd_file.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_structural(version["schema"]["openAPIV3Schema"]))


def _errors(kind: str, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(kind).iter_errors(doc)]


def _containers(node: Any) -> list[dict[str, Any]]:
    """Every container spec anywhere below ``node``."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(value)
            else:
                found.extend(_containers(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_containers(item))
    return found


def _cluster_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    return [s for s in (spec if doc["kind"] == "RayCluster" else None, spec.get("rayClusterSpec"),
                        spec.get("rayClusterConfig")) if s]


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.y*ml")), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_in_cluster_parses(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: expected YAML mappings"


def test_the_kuberay_manifests_we_promise_exist() -> None:
    names = {p.name for p in KUBERAY}
    assert {"rayjob-preprocess.yaml", "rayjob-train.yaml", "rayjob-tune.yaml", "rayservice.yaml"} <= names


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_manifest_matches_its_crd(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == "ray.io/v1"
    assert _errors(doc["kind"], doc) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["spec"].__setitem__("entrypoint", ["python"]), "is not of type 'string'"),
    (lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"].__setitem__("rayStartParam", {}),
     "Additional properties are not allowed ('rayStartParam'"),
    (lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].__setitem__("replicas", "two"),
     "'two' is not of type 'integer'"),
    (lambda d: d["spec"]["rayClusterSpec"]["authOptions"].__setitem__("mode", "password"),
     "'password' is not one of"),
], ids=["type", "unknown-field", "int", "enum"])
def test_crd_validation_catches_broken_manifests(mutate, expected: str) -> None:
    """The schema check is not vacuous: each kind of mistake in a real manifest is reported."""
    doc = copy.deepcopy(yaml.safe_load((CLUSTER / "kuberay" / "rayjob-train.yaml").read_text()))
    mutate(doc)
    errors = _errors("RayJob", doc)
    assert any(expected in e for e in errors), errors


def test_int_or_string_quantities_accept_both_forms() -> None:
    doc = yaml.safe_load((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    limits = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits["cpu"] = 8
    limits["memory"] = "16Gi"
    assert _errors("RayCluster", doc) == []
    limits["memory"] = {"gi": 16}
    assert _errors("RayCluster", doc)


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_images_and_ray_versions_match_the_pin(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    specs = _cluster_specs(doc)
    assert specs, f"{path.name}: no Ray cluster spec"
    for spec in specs:
        assert spec["rayVersion"] == RAY
        assert spec["authOptions"]["mode"] == "token", "every cluster runs with token auth"
    images = {c["image"] for c in _containers(doc)}
    assert images, f"{path.name}: no containers"
    for image in images:
        assert image.rsplit(":", 1)[1].split("-")[1:3] == [f"ray{RAY}", PY_TAG], image


@pytest.mark.parametrize("path", sorted((CLUSTER / "kuberay").glob("rayjob-*.yaml")), ids=lambda p: p.name)
def test_rayjob_entrypoints_are_workflow_commands_their_parser_accepts(path: Path) -> None:
    from cluster.submit import STAGES

    argv = shlex.split(yaml.safe_load(path.read_text())["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("workflows.")
    stage = argv[2].split(".", 1)[1]
    assert stage in STAGES and path.stem == f"rayjob-{stage}"
    if importlib.util.find_spec(argv[2]) is None:
        pytest.fail(f"{path.name} runs {argv[2]}, which does not exist")
    module = importlib.import_module(argv[2])
    if hasattr(module, "build_parser"):
        module.build_parser().parse_args(argv[3:])  # SystemExit (a failure) on unknown options


def test_launcher_yaml_matches_rays_schema_and_pins() -> None:
    import ray.autoscaler

    schema_file = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema = json.loads(schema_file.read_text())
    config = yaml.safe_load((CLUSTER / "launcher" / "aws-gpu.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["docker"]["image"].rsplit(":", 1)[1].split("-")[1:3] == [f"ray{RAY}", PY_TAG]
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    gpu_groups = [n for n in config["available_node_types"].values() if n["resources"].get("GPU")]
    assert gpu_groups, "a GPU worker group"
    for cmd in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd and "chmod 600" in cmd


def test_dockerfile_base_image_matches_the_pin() -> None:
    text = (CLUSTER / "Dockerfile").read_text()
    base_tag = re.search(r"^ARG BASE_TAG=(\S+)$", text, re.M).group(1)
    assert base_tag.split("-")[:2] == [RAY, PY_TAG]
    assert re.search(r"^FROM rayproject/ray:\$\{BASE_TAG\}$", text, re.M)
    assert f"ray.__version__ == '{RAY}'" in text
    assert f"sys.version_info[:2] == ({sys.version_info.major}, {sys.version_info.minor})" in text


def test_serve_config_is_generated_valid_and_embedded_in_the_rayservice() -> None:
    from ray.serve.schema import ServeDeploySchema

    from cluster.serve_config import IMPORT_PATH, build_parser, build_serve_config, render
    from workflows.cli import stage_config

    text = (CLUSTER / "serve_config.yaml").read_text()
    config = yaml.safe_load(text)
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == IMPORT_PATH == "workflows.serve.app:build_app"
    assert set(app["args"]) == {"ensemble", "layout"}
    # No GPUs in this example: 'auto' resolved to the fused layout, one deployment, and the one
    # replica that runs video jobs (/v1/jobs).
    assert app["args"]["layout"] == "fused"
    assert sorted(d["name"] for d in app["deployments"]) == ["AUService", "VideoJobs"]
    for d in app["deployments"]:
        assert 0 < d["ray_actor_options"]["num_cpus"] < 1, "fractional CPUs per replica"
        if d["name"] == "VideoJobs":
            assert d["num_replicas"] == 1 and "autoscaling_config" not in d
            continue
        assert d["autoscaling_config"]["max_replicas"] >= d["autoscaling_config"]["min_replicas"]
        # The ingress (and the proxy) log each HTTP request; the inner hops do not, per call.
        access_log = d.get("logging_config", {}).get("enable_access_log", True)
        assert access_log == (d["name"] == "AUService"), d["name"]
    # Replicas run their code on their own event loop (cheaper per call), on the cluster too.
    assert app["runtime_env"]["env_vars"]["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"
    # The file is what its generator makes from the command written in its header.
    command = re.match(r"# Generated by `(.+?)`", text).group(1)
    assert command.startswith("python -m cluster.serve_config ")
    cfg = stage_config(build_parser().parse_args(shlex.split(command)[3:]))
    assert text == render(build_serve_config(cfg.ensemble, cfg.scaling, user_config=cfg.user_config,
                                             host=cfg.host, port=cfg.port, layout=cfg.layout), command)
    rayservice = yaml.safe_load((CLUSTER / "kuberay" / "rayservice.yaml").read_text())
    assert rayservice["spec"]["serveConfigV2"] == text


def test_runtime_env_excludes_keep_bulk_out_of_the_upload(tmp_path: Path) -> None:
    """Ray's own packager, with our excludes, leaves data, runs and environments behind."""
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, create_package

    spec = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    tree = tmp_path / "checkout"
    files = {"workflows/train.py": 10, "components/au.py": 10, "cluster/submit.py": 10,
             "workflows/configs/demo.yaml": 10, "components/datasets/folds/bp4d.yaml": 10,
             ".venv/lib/torch.so": 1000, ".git/objects/pack.pack": 1000, "runs/fold1/model.pt": 1000,
             "data/BP4D/F001/T1/0001.jpg": 1000, "store/frames/a.parquet": 1000, "video.mp4": 1000,
             "workflows/__pycache__/train.cpython-311.pyc": 10, "facsflow.egg-info/PKG-INFO": 10}
    for rel, size in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x" * size)
    target = tmp_path / "pkg.zip"
    create_package(str(tree), target, include_gitignore=True, excludes=spec["excludes"])
    kept = {n for n in zipfile.ZipFile(target).namelist() if not n.endswith("/")}
    assert kept == {"workflows/train.py", "components/au.py", "cluster/submit.py",
                    "workflows/configs/demo.yaml", "components/datasets/folds/bp4d.yaml"}
    # And this checkout itself, as it is now, fits under Ray's upload limit.
    real = tmp_path / "real.zip"
    create_package(str(ROOT), real, include_gitignore=True, excludes=spec["excludes"])
    assert real.stat().st_size < min(GCS_STORAGE_MAX_SIZE, 100 * 1024 * 1024)
    assert not any(n.startswith(".venv/") for n in zipfile.ZipFile(real).namelist())
