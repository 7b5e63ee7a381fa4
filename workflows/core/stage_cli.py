"""A stage's command line, made from its typed config (moved out of ``workflows.cli``, which
re-exports these names).

Every stage has one config dataclass (``TrainConfig``, ``EvaluateConfig``, ...). ``stage_parser``
turns each of its leaf fields into a flag (``batch_size`` → ``--batch-size``, ``optim.lr`` →
``--optim.lr``; booleans get ``--x``/``--no-x``; tuples take one or more values), its help the
field's docstring, and adds ``--config YAML``, ``--set KEY=VALUE`` and, for stages that use Ray,
``--address``. ``stage_config`` builds the config in one order: the YAML file (its ``extends:``
chain resolved), then ``--set``, then the flags, all through ``apply_overrides``. ``save_config``
writes the resolved config as ``<out>/<stage>.yaml`` beside the stage's outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["stage_parser", "flag_overrides", "stage_config", "save_config"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_sequence(hint: Any) -> bool:
    return typing.get_origin(hint) in (tuple, list)


def _item_hint(hint: Any) -> Any:
    args = typing.get_args(hint)
    return args[0] if args else str


def _unwrap_optional(hint: Any) -> Any:
    """``X | None`` → ``X`` (other hints unchanged)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _metavar(hint: Any) -> str:
    if typing.get_origin(hint) in (dict, Mapping) or hasattr(hint, "model_validate"):
        return "YAML"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), str)
    return {int: "N", float: "X"}.get(hint, "VALUE")


def stage_parser(cls: type, prog: str, description: str, *, ray: bool = True,
                 aliases: "Mapping[str, Sequence[str]] | None" = None,
                 default_config: "str | None" = None,
                 config_aliases: "Sequence[str]" = ()) -> argparse.ArgumentParser:
    """Parser of a stage: one flag per leaf field of ``cls`` plus ``--config``/``--set``/``--address``.

    ``aliases`` maps a dotted field to further option strings that set it (``{"split.fold":
    ["--fold"]}``), ``config_aliases`` further names of ``--config``; ``ray`` adds ``--address``
    (stages that run on Ray). ``default_config``: the YAML read when ``--config`` is not given.
    A stage may add flags of its own afterwards (not config; they must not clash with these).
    """
    from components.configuration import flatten_fields

    aliases = dict(aliases or {})
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.set_defaults(_config_class=cls, _stage=prog.split()[-1])
    general = p.add_argument_group("configuration")
    config_help = f"YAML with {cls.__name__} fields; flags and --set override it"
    if default_config:
        config_help += f" (default: {default_config})"
    general.add_argument("--config", *config_aliases, dest="config", default=default_config, metavar="YAML",
                         help=config_help)
    general.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override any field, dotted for nested ones (--set optim.lr=3e-4); "
                              "the value is YAML; repeatable")
    if ray:
        general.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an "
                                               "embedded local Ray)")
    fields = p.add_argument_group(f"{cls.__name__} fields")
    defaults = _leaf_defaults(cls)
    for name, hint, doc in flatten_fields(cls):
        text = doc
        if name in defaults:
            text += f" (default: {defaults[name]!r})"
        flags = [_flag(name), *aliases.pop(name, ())]
        help_text = text.replace("%", "%%")
        if hint is bool:
            fields.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif typing.get_origin(_unwrap_optional(hint)) is typing.Literal:
            fields.add_argument(*flags, dest=name, choices=typing.get_args(_unwrap_optional(hint)), default=None,
                                help=help_text)
        elif _is_sequence(hint):
            fields.add_argument(*flags, dest=name, nargs="+", default=None, metavar=_metavar(_item_hint(hint)),
                                help=help_text)
        else:
            fields.add_argument(*flags, dest=name, default=None, metavar=_metavar(hint), help=help_text)
    if aliases:
        raise ValueError(f"aliases for unknown {cls.__name__} fields: {sorted(aliases)}")
    return p


def _leaf_defaults(cls: type) -> dict[str, Any]:
    """Dotted field -> default value worth showing in --help (none when ``cls()`` cannot be built)."""
    try:
        obj = cls()
    except (TypeError, ValueError):
        return {}
    out: dict[str, Any] = {}

    def walk(o: Any, pre: str) -> None:
        for f in dataclasses.fields(o):
            v = getattr(o, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{pre}{f.name}.")
            elif v not in ("", (), [], {}, None):
                out[f"{pre}{f.name}"] = list(v) if isinstance(v, tuple) else v

    walk(obj, "")
    return out


def flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags, as a dotted mapping for ``apply_overrides``.

    Values stay the strings typed (``from_dict`` converts them by the field's type, so ``--name
    007`` stays a string); a mapping field's value is parsed as YAML; one value given to an
    integer or float list may be comma-separated (``--aus 1,2,12``).
    """
    import yaml

    from components.configuration import ConfigError, flatten_fields

    out: dict[str, Any] = {}
    for name, hint, _ in flatten_fields(args._config_class):
        value = getattr(args, name, None)
        if value is None:
            continue
        if typing.get_origin(hint) in (dict, Mapping) or hasattr(hint, "model_validate"):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as e:
                raise ConfigError(f"{_flag(name)}: not a YAML mapping ({e})") from None
        elif _is_sequence(hint) and len(value) == 1 and _item_hint(hint) in (int, float):
            value = value[0]
        out[name] = value
    return out


def stage_config(args: argparse.Namespace, *, required: "Sequence[str]" = (),
                 extra: "Mapping[str, Any] | None" = None) -> Any:
    """The stage's config: ``--config`` YAML, then ``--set``, then flags (then ``extra``).

    ``required`` names fields that must not be empty; a missing one is a UserError naming its flag.
    """
    from components.configuration import apply_overrides, from_dict, read_yaml_data
    from workflows.core.runtime import UserError

    cls = args._config_class
    data = read_yaml_data(args.config) if args.config else {}
    apply_overrides(data, list(args.set))
    apply_overrides(data, flag_overrides(args))
    apply_overrides(data, dict(extra or {}))
    cfg = from_dict(cls, data, where=args.config or cls.__name__)
    missing = [name for name in required if _get(cfg, name) in ("", (), [], {}, None)]
    if missing:
        given = " and ".join(f"{_flag(n)} {n.rsplit('.', 1)[-1].upper()}" for n in missing)
        raise UserError(f"{args._stage} needs {given} (or {', '.join(missing)} in --config)")
    return cfg


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def save_config(cfg: Any, out: str, stage: str, header: str = "") -> str:
    """Write ``cfg`` (resolved: file, --set and flags applied) as ``<out>/<stage>.yaml``; local or URI."""
    from components import storage
    from components.configuration import dump_yaml

    path = storage.join(out, f"{stage}.yaml")
    storage.write_text(path, dump_yaml(cfg, header or f"# facsflow {stage}: the resolved config of this run."))
    return path
