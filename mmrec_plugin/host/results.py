"""Results files: reading a grid-search or gamma-sweep summary JSON and checking its schema.

Every command that reads a results file (``report``, ``analyze``, ``compare --report-only``)
is meant to go through :func:`load_results`, so a missing, oversized, truncated, malformed or wrongly shaped file is
one DataError naming the file (and the line or the field), never a traceback; a combination
``id`` (which ``analyze`` puts into a file name) and the ``model`` / ``dataset`` names must
be plain names (:func:`mmrec_plugin.limits.check_name`).

It lives in the host layer and imports only errors, limits and yamlio, so the run pipeline
(:mod:`mmrec_plugin.runs`) can use it as well as the analysis.
"""
from __future__ import annotations

import json
import math
import os
from typing import Dict

from mmrec_plugin import limits
from mmrec_plugin.errors import DataError
from mmrec_plugin.limits import check_name
from mmrec_plugin.yamlio import decode_utf8, read_limited

__all__ = ["load_results", "check_results"]


def load_results(path: str) -> Dict:
    """Read a results JSON (a grid-search summary or a gamma-sweep summary) and check the
    fields the report, ``analyze`` and ``compare`` read (:func:`check_results`).

    Raises:
        DataError: naming the file: missing, not a regular file, over
            :data:`~mmrec_plugin.limits.MAX_RESULTS_BYTES`, not UTF-8, not valid JSON (with
            the line), nested too deeply, or not of the results schema (with the field).
    """
    path = os.fspath(path)
    if not os.path.lexists(path):
        raise DataError(f"results file {path} not found (grid searches write "
                        "<results_dir>/<MODEL>-<DATASET>.json)")
    raw = read_limited(path, "results file", limits.MAX_RESULTS_BYTES, error=DataError)
    text = decode_utf8(raw, path, DataError, expected="a JSON results file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"results file {path} is not valid JSON (line {exc.lineno}): "
                        f"{exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"results file {path} cannot be read as JSON "
                        f"({'nested too deeply' if isinstance(exc, RecursionError) else exc})") from None
    check_results(data, path)
    return data


def _fail(path: str, where: str, what: str) -> None:
    raise DataError(f"results file {path}: {where} must be {what}; it does not look like a "
                    "results file written by mmrec-plugin (run, study or compare)")


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _opt(path: str, where: str, value, kind, what: str) -> None:
    if value is not None and not (isinstance(value, kind) and not isinstance(value, bool)):
        _fail(path, where, what)


def _metrics(path: str, where: str, value) -> None:
    _opt(path, where, value, dict, "an object of metric: number")
    for k, v in (value or {}).items():
        if v is not None and not _is_num(v):
            _fail(path, f"{where}.{k}", "a number")


def _ratio_table(path: str, where: str, value, field: str) -> None:
    _opt(path, where, value, dict, "an object")
    for k, v in (value or {}).items():
        _opt(path, f"{where}.{k}", v, dict, "an object")
        if v is not None and v.get(field) is not None and not _is_num(v.get(field)):
            _fail(path, f"{where}.{k}.{field}", "a number")


def _check_combination(path: str, where: str, c) -> None:
    if not isinstance(c, dict):
        _fail(path, where, "an object")
    cid = c.get("id")
    if cid is not None:
        if not isinstance(cid, str):
            _fail(path, f"{where}.id", "a text")
        check_name(cid, f"results file {path}: {where}.id")
    _opt(path, f"{where}.params", c.get("params"), dict, "an object")
    for k, v in (c.get("params") or {}).items():
        if isinstance(v, float) and not math.isfinite(v):
            _fail(path, f"{where}.params.{k}", "a finite number")
    _metrics(path, f"{where}.valid", c.get("valid"))
    _metrics(path, f"{where}.test", c.get("test"))
    _opt(path, f"{where}.best_epoch", c.get("best_epoch"), int, "an integer")
    _opt(path, f"{where}.status", c.get("status"), str, "a text")
    _opt(path, f"{where}.model_path", c.get("model_path"), str, "a text")
    _opt(path, f"{where}.config", c.get("config"), dict, "an object")
    a = c.get("analysis")
    _opt(path, f"{where}.analysis", a, dict, "an object")
    if a:
        _opt(path, f"{where}.analysis.k", a.get("k"), int, "an integer")
        _opt(path, f"{where}.analysis.n_pairs", a.get("n_pairs"), int, "an integer")
        for key in ("partition", "seed_subsets"):
            _ratio_table(path, f"{where}.analysis.{key}", a.get(key), "ratio")
        _ratio_table(path, f"{where}.analysis.per_type_recall", a.get("per_type_recall"), "recall")


def check_results(data, path: str) -> None:
    """DataError naming ``path`` and the field when ``data`` is not a results dict: a grid
    summary (``combinations``: a list of objects, each ``id`` a plain name
    (:func:`mmrec_plugin.limits.check_name`: it may become part of a file name), ``params``,
    ``valid``/``test`` objects of numbers, ``analysis`` ...) or a gamma-sweep summary
    (``rows``: objects with a numeric ``gamma_s`` and a text ``variant``). ``model`` and
    ``dataset``, when given, must be plain names too."""
    if not isinstance(data, dict):
        _fail(path, "the top level", f"an object, not a {type(data).__name__}")
    combos, rows = data.get("combinations"), data.get("rows")
    if not isinstance(combos, list) and not isinstance(rows, list):
        raise DataError(f"results file {path} has neither 'combinations' (a grid search "
                        "summary) nor 'rows' (a gamma sweep summary)")
    for key in ("model", "dataset"):
        if data.get(key) is not None:
            if not isinstance(data[key], str):
                _fail(path, key, "a text")
            check_name(data[key], f"results file {path}: {key}")
    hp = data.get("hyper_parameters")
    if hp is not None and not (isinstance(hp, list) and all(isinstance(k, str) for k in hp)):
        _fail(path, "hyper_parameters", "a list of key names")
    _opt(path, "selected_by", data.get("selected_by"), str, "a text")
    _opt(path, "k", data.get("k"), int, "an integer")
    for j, c in enumerate(combos if isinstance(combos, list) else []):
        _check_combination(path, f"combinations[{j}]", c)
    if data.get("best") is not None:
        _check_combination(path, "best", data["best"])
    for j, r in enumerate(rows if isinstance(rows, list) and not isinstance(combos, list) else []):
        if not isinstance(r, dict):
            _fail(path, f"rows[{j}]", "an object")
        if not _is_num(r.get("gamma_s")):
            _fail(path, f"rows[{j}].gamma_s", "a number")
        if not isinstance(r.get("variant"), str):
            _fail(path, f"rows[{j}].variant", "a text")
        _opt(path, f"rows[{j}].dataset", r.get("dataset"), str, "a text")
        _metrics(path, f"rows[{j}].valid", r.get("valid"))
        _metrics(path, f"rows[{j}].test", r.get("test"))
        _ratio_table(path, f"rows[{j}].per_type_recall", r.get("per_type_recall"), "recall")
