"""Typed configuration: dataclasses in, YAML and command-line flags out.

A config is a (possibly nested) dataclass whose fields carry a docstring right below them
(the attribute-docstring convention). ``field_docs`` reads those docstrings from the source so
that ``--help`` and the YAML a run saves explain every field. Checks live in each
dataclass's ``__post_init__``.

One override mechanism: ``apply_overrides`` sets dotted keys (``optim.lr``) in a plain mapping,
from ``key=value`` strings (the command line's ``--set``, values parsed as YAML) or from a
mapping of typed values (a Tune trial's hyperparameters). A YAML file may start from another
with ``extends: base.yaml`` (a path relative to the file): the base is read first and the
file's own keys are merged over it, mapping into mapping, anything else replaced.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "field_docs",
    "from_dict",
    "to_dict",
    "load_yaml",
    "read_yaml_data",
    "merge",
    "save_yaml",
    "dump_yaml",
    "apply_overrides",
    "flatten_fields",
]


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (``x: int = 1`` followed by ``\"\"\"doc\"\"\"``)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if isinstance(hint, type) and hasattr(hint, "model_validate"):
        # A pydantic model nested in a config (serve_inputs.Limits): pydantic checks it.
        if isinstance(value, hint):
            return value
        try:
            return hint.model_validate(value)
        except ValueError as e:
            raise ConfigError(f"{where}: {' '.join(str(e).split())}") from None
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {hint.__name__}, got {value!r}")
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, where)
            except (ConfigError, TypeError, ValueError) as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {hint}: {errors}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint in (int, float, str):
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if hint is not str and isinstance(value, bool):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, converting types and rejecting unknown keys."""
    if data is None:
        data = {}
    hints = _resolved_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{where + '.' if where else ''}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Plain YAML/JSON-able structure of a dataclass (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump") and not isinstance(obj, type):
        return obj.model_dump(mode="json")
    return obj


def flatten_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted name, type hint, docstring) for every leaf field of a nested dataclass."""
    out = []
    hints = _resolved_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            out.extend(flatten_fields(hint, name + "."))
        else:
            out.append((name, hint, docs.get(f.name, "")))
    return out


def apply_overrides(data: dict[str, Any], overrides: "list[str] | Mapping[str, Any]") -> dict[str, Any]:
    """Set dotted keys (``a.b``) in a nested mapping, in place; return it.

    ``overrides`` is either ``["a.b=value", ...]`` (the command line's ``--set``; each value is
    parsed as YAML, so ``lr=3e-4`` is a number and ``aus=[1, 2]`` a list) or a mapping
    ``{"a.b": value}`` of values used as they are (a Tune trial's sampled hyperparameters).
    Types are checked later, when the mapping becomes its dataclass (``from_dict``).
    """
    if isinstance(overrides, Mapping):
        pairs = [(str(k), to_dict(v), f"{k}={v!r}") for k, v in overrides.items()]
    else:
        pairs = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            try:
                value = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError as e:
                raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
            pairs.append((key.strip(), value, item))
    for key, value, item in pairs:
        node = data
        parts = key.split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty part in key {key!r}")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p} is not a section")
        node[parts[-1]] = value
    return data


def merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: mappings merge key by key, anything else (lists too) is replaced."""
    out = dict(base)
    for k, v in child.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml_data(path: "str | Path", _seen: "tuple[Path, ...]" = ()) -> dict[str, Any]:
    """The mapping a YAML config file gives, its ``extends:`` chain resolved (bases first)."""
    p = Path(path)
    if not p.is_file():
        where = f" (extended by {_seen[-1]})" if _seen else ""
        raise ConfigError(f"config file not found: {p}{where}")
    if p.resolve() in _seen:
        raise ConfigError(f"{p}: extends itself through {' -> '.join(map(str, _seen))}")
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
    data = dict(loaded or {})
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{p}: extends must be a file name relative to {p.parent}, got {base!r}")
    return merge(read_yaml_data(p.parent / base, (*_seen, p.resolve())), data)


def load_yaml(cls: type[T], path: "str | Path | None" = None,
              overrides: "list[str] | Mapping[str, Any] | None" = None) -> T:
    """Read ``cls`` from a YAML file (optional; ``extends:`` resolved) and apply overrides."""
    data = read_yaml_data(path) if path is not None else {}
    apply_overrides(data, overrides or [])
    return from_dict(cls, data, where=str(path) if path else cls.__name__)


def dump_yaml(obj: Any, header: str = "") -> str:
    """A dataclass as commented YAML text: each field preceded by its docstring."""
    lines: list[str] = [ln for ln in header.splitlines()]

    def emit(o: Any, indent: int) -> None:
        docs = field_docs(type(o))
        for f in dataclasses.fields(o):
            v = getattr(o, f.name)
            pad = "  " * indent
            if f.name in docs:
                lines.append(f"{pad}# {docs[f.name]}")
            if dataclasses.is_dataclass(v):
                lines.append(f"{pad}{f.name}:")
                emit(v, indent + 1)
            else:
                dumped = yaml.safe_dump({f.name: to_dict(v)}, default_flow_style=True, width=10**6).strip()
                if dumped.startswith("{") and dumped.endswith("}"):
                    dumped = dumped[1:-1]
                lines.append(f"{pad}{dumped}")

    emit(obj, 0)
    return "\n".join(lines) + "\n"


def save_yaml(obj: Any, path: "str | Path") -> Path:
    """Write a dataclass as commented YAML (``dump_yaml``) to a local file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dump_yaml(obj))
    return p
