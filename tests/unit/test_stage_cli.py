"""Every stage's command line is generated from its typed config (workflows.core.stage_cli.stage_parser):
a flag per field, --config/--set (and --address where Ray runs), the old flag names kept."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from components.configuration import ConfigError, flatten_fields, load_yaml
from workflows.cli import STAGE_CONFIGS, config_class, save_config, stage_config


RAY_STAGES = {"demo", "preprocess", "label", "train", "tune", "evaluate", "ensemble", "serve", "predict", "recipe"}


def _parse(stage: str, argv: list[str]):
    return importlib.import_module(f"workflows.{stage}").build_parser().parse_args(argv)


def _options(stage: str) -> set[str]:
    parser = importlib.import_module(f"workflows.{stage}").build_parser()
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_every_field_is_a_flag_and_the_common_flags_are_there(stage: str) -> None:
    parser = importlib.import_module(f"workflows.{stage}").build_parser()
    dests = {a.dest for a in parser._actions}
    fields = {name for name, _, _ in flatten_fields(config_class(stage))}
    assert fields <= dests, f"{stage}: no flag for {sorted(fields - dests)}"
    opts = _options(stage)
    assert {"--config", "--set"} <= opts
    assert ("--address" in opts) == (stage in RAY_STAGES)
    assert parser.format_help()  # every field's docstring survives argparse's % formatting


def test_the_documented_invocations_keep_working() -> None:
    from workflows import train

    cfg = train.config_from_args(_parse("train", ["--model", "X", "--data", "STORE", "--out", "RUNS",
                                                  "--workers", "2", "--set", "epochs=2", "--fold", "3"]))
    assert (cfg.model, cfg.data, cfg.out, cfg.workers, cfg.epochs, cfg.split.fold) == ("X", "STORE", "RUNS", 2, 2, 3)
    assert train.config_from_args(_parse("train", ["--data", "S", "--out", "R", "--fold", "all"])).split.fold == 1
    p = stage_config(_parse("predict", ["--ensemble", "DIR", "--input", "a.mp4", "b/", "--out", "OUT",
                                        "--detector", "mtcnn"]))
    assert (p.ensemble, p.input, p.out, p.detector, p.policy) == ("DIR", ("a.mp4", "b/"), "OUT", "mtcnn", "tracked")
    e = stage_config(_parse("evaluate", ["--runs", "r1", "r2", "--out", "REP", "--tune-thresholds",
                                         "--test-data", "S2"]))
    assert (e.runs, e.tune_thresholds, e.test_data, e.bootstrap) == (("r1", "r2"), True, ("S2",), 1000)
    s = stage_config(_parse("serve", ["--ensemble", "DIR"]))
    assert (s.ensemble, s.host, s.port, s.member.max_replicas, s.combiner.max_replicas) == (
        "DIR", "127.0.0.1", 8000, 2, 1)
    from workflows import preprocess

    pre = preprocess.config_from_args(_parse("preprocess", ["--dataset", "bp4d", "--root", "R", "--out", "S",
                                                            "--images", "IMG", "--no-resume"]))
    assert (pre.dataset, pre.adapter_options, pre.resume) == ("bp4d", {"images": "IMG"}, False)
    x = stage_config(_parse("export", ["--checkpoint", "a/c.pt", "b/c.pt", "--format", "torchscript", "--out", "O"]))
    assert (x.checkpoint, x.format, x.ensemble) == (("a/c.pt", "b/c.pt"), "torchscript", "")
    from workflows import tune

    t = tune.config_from_args(_parse("tune", ["--model", "baseline_resnet18_112", "--data", "S", "--out", "O",
                                              "--samples", "3", "--set", "train.max_steps_per_epoch=20"]))
    assert (t.train.model, t.train.data, t.out, t.samples, t.train.max_steps_per_epoch) == (
        "baseline_resnet18_112", "S", "O", 3, 20)
    assert t.space, "the family's shipped search space is the default --config"


def test_file_then_set_then_flags(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("data: S\nout: R\nepochs: 5\noptim: {lr: 0.01}\n")
    base = ["--config", str(tmp_path / "t.yaml")]
    assert stage_config(_parse("train", base)).epochs == 5
    assert stage_config(_parse("train", base + ["--set", "epochs=6"])).epochs == 6
    cfg = stage_config(_parse("train", base + ["--set", "epochs=6", "--epochs", "7", "--optim.weight-decay", "0.5"]))
    assert (cfg.epochs, cfg.optim.lr, cfg.optim.weight_decay) == (7, 0.01, 0.5)


def test_mistakes_name_the_flag_or_field() -> None:
    from workflows.core.runtime import UserError

    with pytest.raises(UserError, match=r"train needs --data DATA and --out OUT \(or data, out in --config\)"):
        stage_config(_parse("train", ["--model", "X"]), required=("data", "out"))
    with pytest.raises(ConfigError, match="epochs: expected int, got 'many'"):
        stage_config(_parse("train", ["--epochs", "many"]))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['epoch'\]"):
        stage_config(_parse("train", ["--set", "epoch=3"]))
    with pytest.raises(ConfigError, match="smooth_window must be odd"):
        stage_config(_parse("serve", ["--ensemble", "E", "--smooth-window", "4"]))
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        _parse("predict", ["--detector", "haar"])


def test_serve_args_file_is_the_config_and_integer_lists_take_commas(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("members: 2\nmember: {max_replicas: 4}\nlimits: {max_body_bytes: 1000}\n")
    s = stage_config(_parse("serve", ["--ensemble", "E", "--args", str(tmp_path / "app.yaml")]))
    assert (s.members, s.member.max_replicas, s.member.min_replicas, s.limits.max_body_bytes) == (2, 4, 1, 1000)
    synth = stage_config(_parse("synth", ["--out", "D", "--aus", "1,2,12"]))
    assert synth.aus == (1, 2, 12)
    assert stage_config(_parse("synth", ["--out", "D", "--aus", "1", "2"])).aus == (1, 2)


@pytest.mark.parametrize("stage,argv", [
    ("train", ["--data", "S", "--out", "R", "--optim.lr", "0.003"]),
    ("tune", ["--config", "workflows/configs/tune-sev-net.yaml", "--data", "S", "--out", "O"]),
    ("evaluate", ["--runs", "r", "--out", "o", "--bootstrap", "0"]),
    ("ensemble", ["--runs", "r", "--out", "o", "--rule", "vote"]),
    ("predict", ["--ensemble", "e", "--input", "x.jpg", "--out", "o"]),
    ("export", ["--ensemble", "e", "--member", "m", "--out", "o"]),
    ("serve", ["--ensemble", "e", "--limits", "{max_video_frames: 10}", "--image-faces", "{detector: mtcnn, policy: all}"]),
])
def test_the_saved_resolved_yaml_reads_back_to_the_same_config(stage: str, argv: list[str], tmp_path: Path,
                                                               monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    cfg = stage_config(_parse(stage, argv))
    path = save_config(cfg, str(tmp_path / "out"), stage)
    assert path == str(tmp_path / "out" / f"{stage}.yaml")
    assert Path(path).read_text().startswith(f"# facsflow {stage}: the resolved config")
    assert load_yaml(type(cfg), path) == cfg
