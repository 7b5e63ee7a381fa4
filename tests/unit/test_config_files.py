"""Every shipped YAML is read into the typed config that uses it; unknown keys fail.

workflows/configs/<stage>[-<variant>].yaml is read into the stage's config
(``workflows.cli.STAGE_CONFIGS``: the part of the file name before the first '-' names the
stage), its ``extends:`` chain resolved; files under workflows/configs/base/ are fragments, read
only through a file that extends them. Each YAML under cluster/ has a checker below that reads it
with the schema its consumer uses (Ray's ServeDeploySchema and our AppArgs, a stage's generated
parser and config, Ray's runtime-env fields, Ray's cluster-launcher schema). The KubeRay
manifests' own fields are checked against the CRDs in tests/integration/test_cluster_manifests.py.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from components.configuration import ConfigError, from_dict, load_yaml, read_yaml_data
from workflows.cli import config_class_of_file


ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "workflows" / "configs"
CLUSTER = ROOT / "cluster"
STAGE_FILES = sorted(CONFIGS.glob("*.yaml"))
BASE_FILES = sorted((CONFIGS / "base").glob("*.yaml"))


@pytest.mark.parametrize("path", STAGE_FILES, ids=lambda p: p.name)
def test_every_stage_yaml_loads_into_its_typed_config(path: Path) -> None:
    cls = config_class_of_file(path)
    assert isinstance(load_yaml(cls, path), cls)


def test_the_shipped_set_is_all_there() -> None:
    names = {p.name for p in STAGE_FILES}
    assert {"demo.yaml", "train-demo.yaml", "preprocess-demo.yaml", "tune-baseline.yaml"} <= names
    assert len(STAGE_FILES) >= 14 and BASE_FILES


def _chain(path: Path) -> list[Path]:
    """``path`` and every file its ``extends:`` reaches, child first."""
    out = [path.resolve()]
    while True:
        base = (yaml.safe_load(out[-1].read_text()) or {}).get("extends")
        if base is None:
            return out
        out.append((out[-1].parent / base).resolve())


@pytest.mark.parametrize("base", BASE_FILES, ids=lambda p: p.name)
def test_every_base_fragment_is_extended_and_so_checked(base: Path) -> None:
    users = [p.name for p in STAGE_FILES if base.resolve() in _chain(p)]
    assert users, f"{base.name} is extended by no shipped config: its keys are never checked"


def test_extends_gives_the_childs_keys_over_the_base() -> None:
    from workflows.train import TrainConfig
    from workflows.tune import SearchConfig

    disfa = load_yaml(TrainConfig, CONFIGS / "train-disfa.yaml")
    # Own keys: model, optimizer. From train-bp4d.yaml: workers, epochs, the rest of optim.
    assert (disfa.model, disfa.optim.optimizer) == ("sev_net", "adam")
    assert (disfa.workers, disfa.epochs, disfa.optim.lr, disfa.optim.step_epochs) == (4, 20, 0.0001, 8)
    sev = load_yaml(SearchConfig, CONFIGS / "tune-sev-net.yaml")
    # train merges key by key with the base's train; space is the child's alone.
    assert (sev.train.model, sev.train.batch_size, sev.train.workers, sev.train.gpu) == ("sev_net", 100, 1, True)
    assert sorted(sev.space) == ["model_kwargs.inter_dropout", "optim.gamma", "optim.lr", "optim.weight_decay"]
    lrp = load_yaml(SearchConfig, CONFIGS / "tune-lrp-arl-ff.yaml")
    assert (lrp.samples, lrp.asha.grace_period, sev.samples, sev.asha.grace_period) == (16, 2, 12, 1)


def test_an_unknown_key_in_a_shipped_file_fails_naming_it(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key, in the child or through its base."""
    from workflows.train import TrainConfig

    bad = tmp_path / "train-typo.yaml"
    bad.write_text(f"extends: {CONFIGS / 'train-bp4d.yaml'}\nepoch: 3\n")
    with pytest.raises(ConfigError, match=r"train-typo.yaml: unknown field\(s\) \['epoch'\]"):
        load_yaml(TrainConfig, bad)
    (tmp_path / "base.yaml").write_text("optim: {learning_rate: 0.1}\n")
    (tmp_path / "train-child.yaml").write_text("extends: base.yaml\nepochs: 3\n")
    with pytest.raises(ConfigError, match=r"optim: unknown field\(s\) \['learning_rate'\]"):
        load_yaml(TrainConfig, tmp_path / "train-child.yaml")


# --- cluster/ -------------------------------------------------------------------------------

def _check_serve_config(config: dict[str, Any], where: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    from workflows.serve.app import AppArgs, app_args

    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        assert isinstance(app_args(from_dict(AppArgs, app["args"], where=f"{where} args")), AppArgs)


def _serve_config(path: Path) -> None:
    _check_serve_config(yaml.safe_load(path.read_text()), path.name)


def _rayservice(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    _check_serve_config(yaml.safe_load(doc["spec"]["serveConfigV2"]), f"{path.name} serveConfigV2")


def _rayjob(path: Path) -> None:
    """The entrypoint is a stage command whose generated parser and typed config accept it."""
    import importlib

    from workflows.cli import config_class, stage_config

    doc = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("workflows."), argv
    stage = argv[2].split(".", 1)[1]
    module = importlib.import_module(argv[2])
    args = module.build_parser().parse_args(argv[3:])
    config = module.config_from_args(args) if hasattr(module, "config_from_args") else stage_config(args)
    assert isinstance(config, config_class(stage))


def _raycluster(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")


def _runtime_env(path: Path) -> None:
    from ray.runtime_env import RuntimeEnv

    spec = yaml.safe_load(path.read_text())
    unknown = sorted(set(spec) - set(RuntimeEnv.known_fields))
    assert not unknown, f"{path.name}: fields Ray's RuntimeEnv does not know: {unknown}"
    RuntimeEnv(**spec)


def _launcher(path: Path) -> None:
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


CLUSTER_CHECKS: dict[str, Callable[[Path], None]] = {
    "serve_config.yaml": _serve_config,
    "runtime_env.yaml": _runtime_env,
    "kuberay/rayservice.yaml": _rayservice,
    "kuberay/raycluster.yaml": _raycluster,
    "kuberay/rayjob-*.yaml": _rayjob,
    "launcher/*.yaml": _launcher,
}
"""Which checker reads each cluster/ YAML (glob relative to cluster/)."""


@pytest.mark.parametrize("path", sorted(CLUSTER.rglob("*.yaml")), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_cluster_yaml_is_read_by_its_consumers_schema(path: Path) -> None:
    rel = path.relative_to(CLUSTER)
    checks = [fn for pattern, fn in CLUSTER_CHECKS.items() if rel.match(pattern)]
    assert len(checks) == 1, f"cluster/{rel}: add one checker for it to CLUSTER_CHECKS"
    checks[0](path)


def test_cluster_serve_config_args_with_a_typo_fail() -> None:
    config = yaml.safe_load((CLUSTER / "serve_config.yaml").read_text())
    config["applications"][0]["args"]["ensmble"] = "x"
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['ensmble'\]"):
        _check_serve_config(config, "serve_config.yaml")


def test_read_yaml_data_resolves_relative_to_the_file_not_the_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text("a: {x: 1, y: 2}\nlst: [1, 2]\n")
    (tmp_path / "sub" / "child.yaml").write_text("extends: base.yaml\na: {y: 3}\nlst: [9]\n")
    monkeypatch.chdir(tmp_path)
    assert read_yaml_data("sub/child.yaml") == {"a": {"x": 1, "y": 3}, "lst": [9]}
