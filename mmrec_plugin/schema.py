"""Typed config keys: one declaration per key (type, allowed values, default, meaning).

A :class:`Key` says what a config key accepts. The host's keys are a table of them
(:mod:`mmrec_plugin.host.schema`); a model's keys are a frozen dataclass whose fields are
declared with :func:`key` (and :func:`nested` for a group of keys another class owns, such
as the BR-MRS objective's)::

    @dataclasses.dataclass(frozen=True)
    class LightGCNConfig(Schema):
        n_layers: int = key(int, 2, "propagation layers on the user-item graph", ge=0)
        reg_weight: float = key(float, 1e-4, "L2 weight on the batch's layer-0 rows", ge=0.0)

    cfg = LightGCNConfig.from_config(config)      # an MMRec / host config, or a dict
    cfg.n_layers                                  # 2

Values are checked when the object is built; a bad value raises
:class:`~mmrec_plugin.errors.ConfigError` naming the key, the value and what is accepted.
:meth:`Schema.from_config` reads the keys from a flat config (the keys of a nested group
too): a missing key, or MMRec's None, takes the default; a one-element list (a grid key
outside a grid run) is unwrapped; a longer list is an error naming the key.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from mmrec_plugin.errors import ConfigError
from mmrec_plugin.utils import check_value

__all__ = ["Key", "key", "nested", "Schema", "read_key", "NO_DEFAULT"]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()
_SCALARS = (int, float, bool, str)


@dataclasses.dataclass(frozen=True)
class Key:
    """What one config key accepts.

    Args:
        kind: ``int``, ``float``, ``bool``, ``str`` (checked by
            :func:`~mmrec_plugin.utils.check_value` with ``checks``), ``list``, ``dict``, or
            ``object`` (anything; give ``check``).
        default: the value when no layer sets the key.
        help: what the key means (printed by ``run --print-config``).
        checks: bounds and choices for scalars: ``ge``, ``gt``, ``le``, ``lt``, ``choices``.
        nullable: None is accepted (and kept).
        check: ``check(name, value) -> value`` for values a type and bounds cannot describe;
            raises ConfigError.
        grid: the key may be searched (listed in ``hyper_parameters``).
    """

    kind: Any
    default: Any = NO_DEFAULT
    help: str = ""
    checks: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    nullable: bool = False
    check: Optional[Callable[[str, Any], Any]] = None
    grid: bool = True

    def validate(self, name: str, value: Any, owner: str = "") -> Any:
        """``value`` checked (and converted: an integral float for an int key stays an
        error, ``1`` for a float key becomes ``1.0``); ConfigError otherwise."""
        if value is None and self.nullable:
            return None
        if self.check is not None:
            return self.check(name, value)
        if self.kind in _SCALARS:
            return check_value(name, value, self.kind, owner=owner, **self.checks)
        if self.kind is list and not isinstance(value, list):
            raise ConfigError(f"{owner + ': ' if owner else ''}config key '{name}' must be a list, "
                              f"got {value!r}")
        if self.kind is dict and not isinstance(value, Mapping):
            raise ConfigError(f"{owner + ': ' if owner else ''}config key '{name}' must be a "
                              f"mapping, got {value!r}")
        return value

    def describe(self) -> str:
        """``(int >= 1) meaning``: the type, bounds and meaning in one line."""
        kind = getattr(self.kind, "__name__", str(self.kind))
        bounds = [f"{op} {self.checks[k]}" for k, op in
                  (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in self.checks]
        if "choices" in self.checks:
            bounds.append("one of " + " | ".join(map(str, self.checks["choices"])))
        head = kind + (" " + ", ".join(bounds) if bounds else "") + (" or null" if self.nullable else "")
        return f"({head}) {self.help}".rstrip()


def key(kind: Any, default: Any, help: str = "", **checks) -> Any:
    """A dataclass field declaring a config key (see :class:`Key`; ``nullable``, ``check``
    and ``grid`` may be given among ``checks``)."""
    opts = {k: checks.pop(k) for k in ("nullable", "check", "grid") if k in checks}
    spec = Key(kind, default, help, checks, **opts)
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"key": spec})
    return dataclasses.field(default=default, metadata={"key": spec})


def nested(cls: type) -> Any:
    """A dataclass field holding the group of keys of the schema ``cls`` (read from the same
    flat config)."""
    return dataclasses.field(default_factory=cls, metadata={"nested": cls})


def read_key(config: Any, name: str) -> Any:
    """``config[name]``, or None when the key is absent (an MMRec config answers None; the
    host's Config raises KeyError; a dict has no such key)."""
    try:
        if isinstance(config, Mapping):
            return config.get(name)
        return config[name] if name in config else None
    except (KeyError, TypeError):
        return None


def _scalar(spec: Key, name: str, value: Any, owner: str = "") -> Any:
    """A one-element list (a grid key outside a grid run) unwrapped; a longer one is an error."""
    if spec.kind in (list, dict, object) or not isinstance(value, (list, tuple)):
        return value
    if len(value) != 1:
        prefix = f"{owner}: " if owner else ""
        raise ConfigError(f"{prefix}config key '{name}': got the list {list(value)}; a list is a grid of "
                          f"values and is expanded only by a grid search (hyper_parameters); "
                          f"give one value")
    return value[0]


class Schema:
    """Base of the frozen config dataclasses (module docstring). ``OWNER`` names the class in
    error messages; :meth:`check` holds the checks that involve several keys."""

    OWNER = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec = f.metadata.get("key")
            if spec is not None:
                value = spec.validate(f.name, getattr(self, f.name), owner=self.OWNER)
                object.__setattr__(self, f.name, value)
            elif f.metadata.get("nested") and not isinstance(getattr(self, f.name), f.metadata["nested"]):
                raise ConfigError(f"{self.OWNER or type(self).__name__}: '{f.name}' must be a "
                                  f"{f.metadata['nested'].__name__}")
        self.check()

    def check(self) -> None:
        """Checks across keys (override); raise ConfigError."""

    @classmethod
    def specs(cls) -> Dict[str, Key]:
        """Every key of this schema, nested groups flattened: name -> :class:`Key`."""
        out: Dict[str, Key] = {}
        for f in dataclasses.fields(cls):
            if "nested" in f.metadata:
                out.update(f.metadata["nested"].specs())
            elif "key" in f.metadata:
                out[f.name] = f.metadata["key"]
        return out

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        """Every key with its default (flat)."""
        return {name: spec.default for name, spec in cls.specs().items()}

    @classmethod
    def from_config(cls, config: Any = None, keys: Optional[Iterable[str]] = None) -> "Schema":
        """Read the keys (only ``keys``, when given) from a flat config; see the module docstring."""
        wanted = None if keys is None else set(keys)
        values: Dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if "nested" in f.metadata:
                values[f.name] = f.metadata["nested"].from_config(config, keys)
                continue
            spec = f.metadata.get("key")
            if spec is None or (wanted is not None and f.name not in wanted):
                continue
            value = read_key(config if config is not None else {}, f.name)
            if value is not None:
                values[f.name] = _scalar(spec, f.name, value, cls.OWNER)
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """Every key with its value (flat: a nested group's keys at the top level)."""
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "nested" in f.metadata:
                out.update(value.to_dict())
            else:
                out[f.name] = dict(value) if isinstance(value, dict) else value
        return out

    def replace(self, **changes) -> "Schema":
        """A copy with ``changes`` (flat key names, nested groups' included) applied and checked."""
        own = {f.name for f in dataclasses.fields(self) if "nested" not in f.metadata}
        groups = {f.name: f.metadata["nested"] for f in dataclasses.fields(self) if "nested" in f.metadata}
        direct = {k: v for k, v in changes.items() if k in own}
        for name, group in groups.items():
            mine = {k: v for k, v in changes.items() if k in group.specs()}
            if mine:
                direct[name] = getattr(self, name).replace(**mine)
        unknown = sorted(set(changes) - own - set().union(*(g.specs() for g in groups.values())))
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown keys {unknown}")
        return dataclasses.replace(self, **direct)
