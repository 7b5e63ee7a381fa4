"""Typed config: YAML in, overrides, docstrings, errors that name the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components.configuration import ConfigError, field_docs, from_dict, load_yaml, save_yaml

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    """Learning rate."""
    steps: tuple[int, ...] = (1, 2)
    """Steps."""


@dataclass
class Outer:
    name: str = "x"
    """The name."""
    inner: Inner = field(default_factory=Inner)
    """Nested section."""
    flag: bool = False
    """A switch."""

    def __post_init__(self) -> None:
        if self.name == "bad":
            raise ValueError("name must not be 'bad'")


def test_field_docs_read_attribute_docstrings() -> None:
    assert field_docs(Outer) == {"name": "The name.", "inner": "Nested section.", "flag": "A switch."}


def test_yaml_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: run1\ninner: {lr: 0.5}\n")
    cfg = load_yaml(Outer, p, ["inner.steps=[4, 8]", "flag=true"])
    assert cfg == Outer(name="run1", inner=Inner(lr=0.5, steps=(4, 8)), flag=True)


def test_saved_yaml_round_trips_with_comments(tmp_path: Path) -> None:
    cfg = Outer(name="a", inner=Inner(lr=0.25, steps=(3,)), flag=True)
    path = save_yaml(cfg, tmp_path / "saved.yaml")
    text = path.read_text()
    assert "# Learning rate." in text
    assert load_yaml(Outer, path) == cfg


def test_unknown_field_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['lrr'\]"):
        from_dict(Outer, {"inner": {"lrr": 1}})


def test_wrong_type_names_the_field() -> None:
    with pytest.raises(ConfigError, match="inner.lr: expected float"):
        from_dict(Outer, {"inner": {"lr": "fast"}})


def test_post_init_check_becomes_config_error() -> None:
    with pytest.raises(ConfigError, match="must not be 'bad'"):
        from_dict(Outer, {"name": "bad"})


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(Outer, tmp_path / "nope.yaml")


def test_every_shipped_yaml_parses() -> None:
    """Every YAML in workflows/configs loads into its dataclass (STYLE point 9)."""
    import importlib

    root = Path(__file__).resolve().parents[2] / "workflows" / "configs"
    kinds = {"demo": "workflows.demo:DemoConfig", "preprocess": "workflows.preprocess:PreprocessConfig",
             "train": "workflows.train:TrainConfig", "tune": "workflows.tune:SearchConfig",
             "recipe": "workflows.train:TrainConfig"}
    files = sorted(root.glob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        module, name = kinds[f.stem.split("-")[0]].split(":")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(load_yaml(cls, f), cls), f
