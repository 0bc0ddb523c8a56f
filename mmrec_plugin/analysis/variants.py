"""The variants of a comparison: ``--variant NAME [KEY=VALUE ...]``, ``--variants FILE.yaml``
and ``--set``, checked against each variant's model config.

``--variant NAME [KEY=VALUE ...]`` (repeatable): the name, then config overrides with YAML
values (``--variant nochns chns_weight=0``, ``--variant lgcn model=LightGCN``,
``--variant wide "reg_weight=[1e-4, 1e-3]"``); ``model=NAME`` picks the variant's model
(default ``-m``, BRMRS). ``--variants FILE.yaml`` reads ``{NAME: {KEY: VALUE}}``, or a mapping
with ``variants:`` and optionally ``baseline``, ``seeds``, ``set``, ``model``, ``dataset``
(the command line wins; command-line variants come after the file's). ``--set KEY=VALUE``
applies to every variant whose model knows the key (a variant's own value wins). ``seed``,
``dataset``, ``data_path`` and ``results_dir`` are the protocol's own and cannot be set.
A grid the model yaml or a list value defines is searched per seed; ``pin_grid`` pins every
grid key the variant and ``--set`` leave open to its first value.
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Optional, Sequence

from mmrec_plugin.errors import ConfigError, DataError, UserError, did_you_mean

logger = logging.getLogger(__name__)

__all__ = ["parse_assignments", "parse_variant_options", "load_spec", "resolve_variants",
           "RESERVED", "SPEC_KEYS"]

RESERVED = ("seed", "dataset", "data_path", "results_dir")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def parse_assignments(tokens: Sequence[str], where: str) -> Dict:
    """``['k=v', ...]`` -> ``{k: yaml(v)}``; ``where`` names the option in errors."""
    from mmrec_plugin.host.config import parse_value

    out: Dict = {}
    for tok in tokens or []:
        if "=" not in tok or not tok.split("=", 1)[0].strip():
            raise UserError(f"{where}: expected KEY=VALUE, got {tok!r}")
        key, value = tok.split("=", 1)
        out[key.strip()] = parse_value(value, f"{where} {key.strip()}")
    return out


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"{where}: variant name {name!r} must be letters, digits, _ . + - "
                        "(it names the results folder)")
    return name


def _check_reserved(overrides: Dict, where: str) -> None:
    for key in RESERVED:
        if key in overrides:
            raise UserError(f"{where}: '{key}' is set by the protocol (use --seeds, -d, "
                            "--data-path, --results-dir), not per variant or --set")


def parse_variant_options(groups: Sequence[Sequence[str]]) -> Dict[str, Dict]:
    """``--variant NAME [KEY=VALUE ...]`` groups -> ``{name: overrides}`` (order kept)."""
    out: Dict[str, Dict] = {}
    for group in groups or []:
        name = _check_name(group[0], "--variant")
        if name in out:
            raise UserError(f"--variant {name}: given twice")
        out[name] = parse_assignments(group[1:], f"--variant {name}")
    return out


SPEC_KEYS = ("variants", "baseline", "seeds", "set", "model", "dataset")


def load_spec(path: str) -> Dict:
    """Read a ``--variants`` yaml (see the module docstring) into ``{'variants': {name:
    overrides}, ...}``; a malformed file is a :class:`DataError` naming it."""
    from mmrec_plugin.yamlio import load_yaml

    data = load_yaml(path, "--variants file", error=DataError)
    if not isinstance(data, dict) or not data:
        raise DataError(f"--variants: {path} must be a mapping {{NAME: {{KEY: VALUE}}}} or have "
                        f"a 'variants:' mapping")
    spec = dict(data) if "variants" in data else {"variants": data}
    unknown = [k for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise DataError(f"--variants: {path} has unknown top-level key(s) {unknown}; "
                        f"accepted: {', '.join(SPEC_KEYS)}")
    variants = spec.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise DataError(f"--variants: {path}: 'variants' must be a non-empty mapping NAME: {{KEY: VALUE}}")
    clean = {}
    for name, overrides in variants.items():
        overrides = {} if overrides is None else overrides
        if not isinstance(overrides, dict):
            raise DataError(f"--variants: {path}: variant {name!r} must map to {{KEY: VALUE}}, "
                            f"got {overrides!r}")
        clean[_check_name(str(name), f"--variants {path}")] = dict(overrides)
    spec["variants"] = clean
    if spec.get("set") is not None and not isinstance(spec["set"], dict):
        raise DataError(f"--variants: {path}: 'set' must be a mapping KEY: VALUE")
    return spec


def resolve_variants(model: str, dataset: str, variants: Dict[str, Dict], common: Dict,
                     data_path: Optional[str], pin_grid: bool) -> Dict[str, Dict]:
    """Validate every variant against its model's layered config and build its Config (once).

    Returns ``{name: {'model', 'overrides', 'grid', 'config'}}``: ``overrides`` are the
    config_dict of its runs without seed / paths, ``grid`` the number of combinations per
    seed, ``config`` the variant's :class:`~mmrec_plugin.host.config.Config` (seed and
    results folder are set per run).
    """
    from mmrec_plugin.host.config import Config, expand_grid

    _check_reserved(common, "--set")
    base = {"data_path": data_path} if data_path else {}
    known_by_model: Dict[str, frozenset] = {}
    plans: Dict[str, Dict] = {}
    for name, given in variants.items():
        given = dict(given)
        _check_reserved(given, f"variant {name}")
        vmodel = str(given.pop("model", model))
        dropped = []

        def check(key, known, given=given, vmodel=vmodel, dropped=dropped):
            known_by_model[vmodel] = known
            if key in known or key in base:
                return key
            if key in given:
                raise ConfigError(f"variant {name}: {vmodel} on {dataset} has no config key "
                                  f"'{key}'{did_you_mean(key, known)}")
            dropped.append(key)  # a --set key this variant's model does not know
            return None

        overrides = {**{k: v for k, v in common.items()}, **given}
        try:
            config = Config(vmodel, dataset, config_dict={**base, **overrides}, check_keys=check)
        except UserError as exc:
            raise type(exc)(f"variant {name}: {exc}") from None
        for key in dropped:
            overrides.pop(key, None)
        if dropped:
            logger.info("variant %s: %s does not know --set %s; not applied", name, vmodel,
                        ", ".join(sorted(dropped)))
        if pin_grid:
            for key in config["hyper_parameters"]:
                if key != "seed" and key not in overrides and isinstance(config[key], list):
                    overrides[key] = config[key] = [config[key][0]]
        n_grid = len(expand_grid(config)) // max(1, len(config["seed"]))
        plans[name] = {"model": config["model"], "overrides": overrides, "grid": n_grid,
                       "config": config}
    unknown = [k for k in common if k != "hyper_parameters"
               and not any(k in known for known in known_by_model.values())]
    if unknown:
        allk = frozenset().union(*known_by_model.values())
        raise ConfigError(f"--set: no variant's model knows key '{unknown[0]}'"
                          f"{did_you_mean(unknown[0], allk)}")
    return plans
