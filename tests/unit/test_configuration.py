"""Typed config: YAML in, overrides, docstrings, errors that name the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components.configuration import ConfigError, field_docs, from_dict, load_yaml, save_yaml



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


def test_set_strings_and_a_typed_mapping_take_the_one_override_path() -> None:
    """--set's YAML text and a Tune trial's typed values end in the same config."""
    from components.configuration import apply_overrides

    from_text = apply_overrides({"inner": {"lr": 0.1}}, ["inner.lr=0.0003", "inner.steps=[4, 8]", "name=007"])
    from_values = apply_overrides({"inner": {"lr": 0.1}}, {"inner.lr": 3e-4, "inner.steps": (4, 8), "name": "007"})
    # YAML reads 007 as the integer 7; a typed value stays what it is.
    assert from_text == {"inner": {"lr": 3e-4, "steps": [4, 8]}, "name": 7}
    assert from_values == {"inner": {"lr": 3e-4, "steps": [4, 8]}, "name": "007"}
    assert from_dict(Outer, from_values) == Outer(name="007", inner=Inner(lr=3e-4, steps=(4, 8)))
    with pytest.raises(ConfigError, match="name is not a section"):
        apply_overrides({"name": "x"}, ["name.first=1"])


def test_extends_merges_the_base_under_the_file(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("name: base\ninner: {lr: 0.5, steps: [1, 2, 3]}\nflag: true\n")
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\ninner: {steps: [7]}\n")
    (tmp_path / "top.yaml").write_text("extends: mid.yaml\nname: top\n")
    # Mappings merge key by key (lr from the base), lists are replaced, chains resolve in order.
    assert load_yaml(Outer, tmp_path / "top.yaml", ["flag=false"]) == Outer(
        name="top", inner=Inner(lr=0.5, steps=(7,)), flag=False)


def test_extends_errors_name_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="a.yaml: extends itself through"):
        load_yaml(Outer, tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"config file not found: .*gone.yaml \(extended by .*c.yaml\)"):
        load_yaml(Outer, tmp_path / "c.yaml")
