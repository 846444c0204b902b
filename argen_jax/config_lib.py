"""Configs: typed sections with one source of defaults (a leaf: it imports no other layer).

Every family's settings are a frozen dataclass (defaults + validation in `__post_init__`)
built from its ConfigDict section by `typed`, which rejects unknown keys with the list of
known ones: the dataclass is the one place a default lives, so experiment files list only
what differs from it (`section`). The sections every experiment file shares are
`argen_jax/sections.py`; `load_sibling` lets a config file reuse another file of its folder
without putting the repository on sys.path.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import types
from typing import Any, TypeVar

import ml_collections

from argen_jax.errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, default: Any, where: str) -> Any:
    """A config value converted to the type of the field's default (ints from JSON stay
    ints, lists become tuples, a float field takes an int)."""
    if value is None or default is None or default is dataclasses.MISSING:
        return value
    try:
        if isinstance(default, bool):
            if not isinstance(value, (bool, int)):
                raise TypeError
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, str):
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(default, tuple):
            return tuple(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}={value!r} should be a {type(default).__name__}") from None
    return value


def typed(cls: type[T], section: Any, where: str, ignore: tuple[str, ...] = ()) -> T:
    """The dataclass `cls` from a config section (ConfigDict, dict or None): absent keys take
    the class defaults, an unknown key is a ConfigError naming it and the known keys, values
    are coerced to the defaults' types, then `cls.__post_init__` validates. `ignore`: keys the
    section may hold for someone else (e.g. `name`)."""
    items = dict(section.items()) if section is not None else {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(items) - set(fields) - set(ignore))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + '.' + k for k in unknown)}; "
                          f"known: {sorted(fields)}")
    kw = {}
    for name, f in fields.items():
        if name not in items:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        value = items[name]
        if isinstance(value, ml_collections.ConfigDict):
            value = value.to_dict()
        kw[name] = _coerce(value, default, f"{where}.{name}")
    try:
        return cls(**kw)
    except TypeError as e:  # a required field is missing
        raise ConfigError(f"{where}: {e}") from None


COMPUTE_DTYPES = ("float32", "bfloat16", "float16")  # model.dtype (parameters stay float32)


def check_positive(settings: Any, *names: str, section: str = "model") -> None:
    """A ConfigError naming the first of `names` (fields of `settings`) that is not > 0."""
    for name in names:
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{section}.{name}={getattr(settings, name)} must be positive")


def check_choice(settings: Any, name: str, choices, section: str = "model") -> None:
    """A ConfigError when field `name` of `settings` is not one of `choices`."""
    if getattr(settings, name) not in choices:
        raise ConfigError(f"{section}.{name}={getattr(settings, name)!r} unknown; known: "
                          f"{tuple(choices)}")


def section(cls: type, *, name: str | None = None, **overrides) -> ml_collections.ConfigDict:
    """A config section holding every field of the settings dataclass `cls`: its defaults,
    then `overrides` (checked by `typed`). Experiment files call it with only what differs
    from the defaults, yet every key exists for `--config.<section>.<key>=` overrides.
    `name`: the registry name a `model` section carries besides the settings."""
    if name is not None and "name" in {f.name for f in dataclasses.fields(cls)}:
        overrides, name = {**overrides, "name": name}, None  # a settings field called name
    settings = typed(cls, overrides, cls.__name__)
    d = ml_collections.ConfigDict()
    if name is not None:
        d.name = name
    for f in dataclasses.fields(settings):
        d[f.name] = getattr(settings, f.name)
    return d


def load_sibling(config_file: str, name: str) -> types.ModuleType:
    """The config module `name`.py next to `config_file` (pass `__file__`)."""
    path = os.path.join(os.path.dirname(os.path.abspath(config_file)), name + ".py")
    spec = importlib.util.spec_from_file_location(f"_argen_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(arg: str | None, known: set[str]) -> set[str]:
    """`get_config`'s comma-separated argument ("tiny,8bit") -> the set of flags; an unknown
    flag is an error that lists the known ones."""
    args = set(filter(None, (arg or "").split(",")))
    if args - known:
        raise ValueError(f"unknown config arguments {sorted(args - known)}; known: {sorted(known)}")
    return args
