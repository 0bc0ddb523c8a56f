"""Named study presets: the paper's analyses as ordinary grid searches.

Every study is a set of config overrides (``hyper_parameters`` lists, MMRec semantics) for
the BRMRS model, run by the host's grid search; every finished combination of a model with
``branch_scores`` records its subset analysis next to its metrics, so a sweep's subset ratios
come for free. Presets (docs/METHOD.md; paper Fig. 1, Table 2, Sections 5.4-5.6):

============== ======= =================================================================
study          data    grid
============== ======= =================================================================
fig1           baby    orth_weight x nce_weight, CHNS and Syn off (chns=syn=0, bpr=1)
table2         baby    four runs: CHNS+Syn, no Syn, no CHNS, neither (= plain fused BPR)
neg_strategies baby    neg_strategy in cross / same / fused / uniform
sensitivity    baby    chns_weight x syn_weight x syn_margin around the defaults
synthetic      demo    two runs: BRMRS defaults vs plain fused BPR (chns=syn=0, bpr=1)
gamma_sweep    demo    :func:`run_gamma_sweep`: per gamma_s a generated dataset, both runs
============== ======= =================================================================

A study may have several *variants* (separate grid searches, each in its own results
folder ``<results_dir>/<study>/<variant>/``); most have one, ``grid``.

``"default"`` in a preset's value lists stands for the model's own default (the first value
of that key in the model yaml, ``src/configs/model/BRMRS.yaml``), resolved by
:func:`study_config`. Because the host concatenates ``hyper_parameters`` across config
layers, keys that the model yaml sweeps but the study does not are pinned to their first
value by :func:`pin_model_grid`, so a study runs exactly its own grid.

Note on ``table2``: it is four one-combination variants, not a ``chns_weight x syn_weight``
grid, because the grid's (0, 0) corner with ``bpr_weight`` at its default 0 has no ranking
loss at all and BRMRS refuses it at construction (which stopped the whole study). The
"neither" row is the same backbone trained with plain fused BPR (``fused_bpr``: chns 0,
syn 0, bpr 1), the paper's w/o-both baseline; the other three keep ``bpr_weight`` at the
model default. ``mmrec-plugin study table2`` writes ``report/comparison.md`` side by side.
"""
from __future__ import annotations

import copy
import json
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence

from mmrec_plugin.errors import UserError, did_you_mean

logger = logging.getLogger(__name__)

DEFAULT = "default"
MODEL = "BRMRS"

FUSED_BPR = {"chns_weight": [0.0], "syn_weight": [0.0], "bpr_weight": [1.0]}

STUDIES: Dict[str, Dict] = {
    "fig1": {
        "description": "Fig. 1: subset ratios against orth_weight and nce_weight, CHNS and Syn off",
        "dataset": "baby",
        "variants": {
            "grid": {
                "hyper_parameters": ["orth_weight", "nce_weight"],
                "orth_weight": [0.0, 0.1, 1.0],
                "nce_weight": [0.0, 0.1, 1.0],
                "chns_weight": [0.0],
                "syn_weight": [0.0],
                "bpr_weight": [1.0],
            }
        },
    },
    "table2": {
        "description": "Table 2: ablation of CHNS and Syn (each weight 0 or its default; "
                       "both off = the backbone with plain fused BPR)",
        "dataset": "baby",
        "variants": {
            "chns_syn": {"chns_weight": [DEFAULT], "syn_weight": [DEFAULT]},
            "no_syn": {"chns_weight": [DEFAULT], "syn_weight": [0.0]},
            "no_chns": {"chns_weight": [0.0], "syn_weight": [DEFAULT]},
            "fused_bpr": dict(FUSED_BPR),
        },
    },
    "neg_strategies": {
        "description": "Section 5.5: negative strategies cross / same / fused / uniform",
        "dataset": "baby",
        "variants": {
            "grid": {
                "hyper_parameters": ["neg_strategy"],
                "neg_strategy": ["cross", "same", "fused", "uniform"],
            }
        },
    },
    "sensitivity": {
        "description": "Section 5.4: sensitivity to chns_weight, syn_weight, syn_margin",
        "dataset": "baby",
        "variants": {
            "grid": {
                "hyper_parameters": ["chns_weight", "syn_weight", "syn_margin"],
                "chns_weight": [0.1, 0.5, 1.0],
                "syn_weight": [0.1, 0.5, 1.0],
                "syn_margin": [0.1, 0.5, 1.0],
            }
        },
    },
    "synthetic": {
        "description": "synthetic data: per-type recall of BRMRS vs plain fused BPR on the demo data",
        "dataset": "demo",
        "variants": {"brmrs": {}, "fused_bpr": dict(FUSED_BPR)},
    },
    "gamma_sweep": {
        "description": "synthetic data: sweep of the generator's gamma_s, BRMRS vs fused BPR (run_gamma_sweep)",
        "dataset": "demo",
        "variants": {"brmrs": {}, "fused_bpr": dict(FUSED_BPR)},
        "gammas": [0.0, 0.5, 1.0, 2.0, 4.0],
    },
}


def _unknown(name: str) -> UserError:
    return UserError(
        f"unknown study {name!r}{did_you_mean(name, STUDIES)}; available: {', '.join(STUDIES)}"
    )


def model_defaults(model: str = MODEL) -> Dict:
    """The model's keys with their defaults: its schema's, then its yaml's (grid lists kept)."""
    from mmrec_plugin.host.config import load_yaml, model_schema
    from mmrec_plugin.registry import get_model, model_config_path

    out = {k: spec.default for k, spec in model_schema(get_model(model)).items()}
    path = model_config_path(model)
    if path:
        out.update(load_yaml(path))
    return out


def _first(value):
    return value[0] if isinstance(value, list) and value else value


def study_config(name: str, variant: Optional[str] = None, defaults: Optional[Dict] = None) -> Dict:
    """Config overrides of study ``name`` (one variant), with ``"default"`` resolved.

    Args:
        name: a key of :data:`STUDIES`.
        variant: which variant (default: the study's first).
        defaults: the model's values (default: :func:`model_defaults`); a list value means
            its first element.

    Returns:
        A fresh dict of overrides; every key of its ``hyper_parameters`` maps to a list.
    """
    if name not in STUDIES:
        raise _unknown(name)
    variants = STUDIES[name]["variants"]
    if variant is None:
        variant = next(iter(variants))
    if variant not in variants:
        raise UserError(
            f"study {name!r} has no variant {variant!r}; variants: {', '.join(variants)}"
        )
    if defaults is None:
        defaults = model_defaults()
    cfg = copy.deepcopy(variants[variant])
    for key, values in cfg.items():
        if isinstance(values, list) and DEFAULT in values:
            resolved = _first(defaults.get(key))
            if resolved is None:
                raise UserError(f"study {name!r}: no default known for key {key!r}")
            out: List = []
            for v in values:
                v = resolved if v == DEFAULT else v
                if v not in out:
                    out.append(v)
            cfg[key] = out
    return cfg


def pin_model_grid(overrides: Dict, defaults: Optional[Dict] = None) -> Dict:
    """Pin every key the model yaml sweeps (its ``hyper_parameters``) and the study does not
    set to a one-element list of its first value, so the study runs exactly its own grid.

    Returns a new dict; ``overrides`` is not modified.
    """
    if defaults is None:
        defaults = model_defaults()
    out = copy.deepcopy(overrides)
    for key in defaults.get("hyper_parameters", []) or []:
        if key == "seed" or key in out:
            continue
        value = defaults.get(key)
        if isinstance(value, list) and len(value) > 1:
            out[key] = [value[0]]
            logger.info("study: pinning the model grid key %s to %r", key, value[0])
    return out


def study_variants(name: str, defaults: Optional[Dict] = None) -> Dict[str, Dict]:
    """``{variant: overrides}`` of a study, resolved and pinned (ready for the grid search)."""
    if name not in STUDIES:
        raise _unknown(name)
    if defaults is None:
        defaults = model_defaults()
    return {
        v: pin_model_grid(study_config(name, v, defaults), defaults)
        for v in STUDIES[name]["variants"]
    }


# ------------------------------------------------------------------------- running
def _default_runner(model: str, dataset: str, config_dict: Dict) -> Dict:
    from mmrec_plugin.analysis.rerun import record_analysis
    from mmrec_plugin.host.config import Config, strict_key
    from mmrec_plugin.runs import grid

    config = Config(model, dataset, config_dict=config_dict, check_keys=strict_key)
    return grid(config, analyze=record_analysis)


def results_json_path(results_dir: str, model: str, dataset: str) -> str:
    """Where the host's grid search writes its JSON summary."""
    return os.path.join(results_dir, f"{model}-{dataset}.json")


def run_study(
    name: str,
    dataset: Optional[str] = None,
    results_dir: str = "results",
    data_path: Optional[str] = None,
    extra: Optional[Dict] = None,
    runner: Optional[Callable[[str, str, Dict], None]] = None,
) -> Dict[str, str]:
    """Run every variant of a study as a grid search; resumable (the host skips finished
    combinations). Returns ``{variant: results json path}``.

    Args:
        name: study name (``gamma_sweep`` goes through :func:`run_gamma_sweep`).
        dataset: dataset name (default: the study's).
        results_dir: parent folder; variant ``v`` writes to ``<results_dir>/<name>/<v>/``.
        data_path: data folder (default: the host's ``data_path``).
        extra: further overrides applied to every variant (e.g. ``{"epochs": 50}``).
        runner: ``runner(model, dataset, config_dict)`` (default: the run pipeline's
            :func:`~mmrec_plugin.runs.grid`); may return the summary dict, whose ``path`` is
            then the variant's file.
    """
    if name not in STUDIES:
        raise _unknown(name)
    if name == "gamma_sweep":
        raise UserError("study 'gamma_sweep' generates its datasets: run it with run_gamma_sweep "
                        "(mmrec-plugin study gamma_sweep --gammas ...)")
    dataset = dataset or STUDIES[name]["dataset"]
    runner = runner or _default_runner
    paths = {}
    variants = study_variants(name)
    for j, (variant, overrides) in enumerate(variants.items(), 1):
        out_dir = os.path.join(results_dir, name, variant)
        cfg = dict(overrides)
        cfg.update(extra or {})
        cfg["results_dir"] = out_dir
        if data_path is not None:
            cfg["data_path"] = data_path
        logger.info("study %s: variant %s (%d of %d) -> %s", name, variant, j, len(variants), out_dir)
        summary = runner(MODEL, dataset, cfg)
        # the runner's summary knows its file (a second grid in a folder gets its own name)
        paths[variant] = (summary["path"] if isinstance(summary, dict) and "path" in summary
                          else results_json_path(out_dir, MODEL, dataset))
    return paths


def _gamma_name(base: str, gamma: float) -> str:
    return f"{base}_gs{gamma:g}".replace(".", "p").replace("-", "m")


BUDGET_KEYS = ("epochs", "stopping_step", "train_batch_size")


def demo_budget() -> Dict:
    """The training budget of the packaged ``demo`` dataset yaml (``epochs``,
    ``stopping_step``, ``train_batch_size``), or ``{}`` when it cannot be read.

    The gamma sweep's generated datasets (``demo_gs2``, ...) have the demo's sizes but not its
    name, so without this they would train under the general defaults (1000 epochs).
    """
    try:
        from mmrec_plugin.host.config import CONFIG_DIR, load_yaml

        data = load_yaml(os.path.join(CONFIG_DIR, "dataset", "demo.yaml"))
    except Exception as exc:  # optional: fall back to the host's defaults
        logger.debug("demo dataset yaml not readable: %s", exc)
        return {}
    return {k: data[k] for k in BUDGET_KEYS if k in data}


def run_gamma_sweep(
    gammas: Sequence[float],
    out: str,
    base_name: str = "demo",
    generator_kwargs: Optional[Dict] = None,
    extra: Optional[Dict] = None,
    k: int = 20,
    runner: Optional[Callable[[str, str, Dict], None]] = None,
    generate: Optional[Callable[..., None]] = None,
    analyze: Optional[Callable[[str], Dict]] = None,
) -> Dict:
    """Sweep the synthetic generator's ``gamma_s``: per value, generate a dataset and run
    BRMRS and the fused-BPR baseline; collect the best (by validation) combination's test
    metrics and per-type Recall@K. Resumable: a dataset already generated is reused and the
    host skips finished combinations. Writes ``<out>/gamma_sweep.json`` (atomically).

    Args:
        gammas: values of ``gamma_s``.
        out: folder; datasets go to ``<out>/data/<name>/``, results to
            ``<out>/results/<name>/<variant>/``.
        base_name: dataset name prefix (``demo`` -> ``demo_gs2`` for gamma_s = 2).
        generator_kwargs: further arguments of the synthetic generator (sizes, seed, ...).
        extra: further config overrides for every run (e.g. ``{"epochs": 50}``); runs
            start from the demo dataset's budget (:func:`demo_budget`), which ``extra``
            overrides.
        k: cutoff of the per-type recall.
        runner / generate / analyze: injection points for tests (defaults: the run
            pipeline's grid, the :func:`mmrec_plugin.data.synthetic` generator, and
            :func:`mmrec_plugin.analysis.rerun.analyze_results` on the best combination).

    Returns:
        ``{"k", "gammas", "rows": [{"gamma_s", "dataset", "variant", "results",
        "valid", "test", "per_type_recall"}]}``.
    """
    if not gammas:
        raise UserError("gamma sweep: give at least one gamma_s value")
    runner = runner or _default_runner
    generate = generate or _default_generate
    data_dir = os.path.join(out, "data")
    rows = []
    variants = study_variants("gamma_sweep")
    budget = demo_budget()
    for g_i, gamma in enumerate(gammas, 1):
        name = _gamma_name(base_name, float(gamma))
        folder = os.path.join(data_dir, name)
        if not os.path.isfile(os.path.join(folder, f"{name}.inter")):
            logger.info("gamma sweep: generating %s (gamma_s=%g, %d of %d)", name, gamma, g_i, len(gammas))
            generate(data_dir, name, float(gamma), **(generator_kwargs or {}))
        for variant, overrides in variants.items():
            res_dir = os.path.join(out, "results", name, variant)
            cfg = dict(budget)
            cfg.update(overrides)
            cfg.update(extra or {})
            cfg.update({"results_dir": res_dir, "data_path": data_dir})
            logger.info("gamma sweep: gamma_s=%g, %s", gamma, variant)
            runner(MODEL, name, cfg)
            path = results_json_path(res_dir, MODEL, name)
            rows.append(_sweep_row(float(gamma), name, variant, path, k, data_dir, analyze))
    summary = {"k": k, "gammas": [float(g) for g in gammas], "rows": rows}
    from mmrec_plugin.analysis.report import write_text_atomic

    write_text_atomic(os.path.join(out, "gamma_sweep.json"), json.dumps(summary, indent=2))
    return summary


def _sweep_row(gamma, name, variant, path, k, data_dir, analyze) -> Dict:
    if not os.path.isfile(path):
        raise UserError(f"gamma sweep: the grid search wrote no results file {path}")
    with open(path) as fh:
        results = json.load(fh)
    best = results.get("best") or {}
    per_type = ((best.get("analysis") or {}).get("per_type_recall")
                if (best.get("analysis") or {}).get("k") == k else None)
    if per_type is None:
        if analyze is None:
            from mmrec_plugin.analysis.rerun import analyze_results

            def analyze(p):
                return analyze_results(p, combination="best", k=k, data_path=data_dir)
        per_type = analyze(path).get("per_type_recall")
    return {
        "gamma_s": gamma,
        "dataset": name,
        "variant": variant,
        "results": path,
        "valid": best.get("valid"),
        "test": best.get("test"),
        "per_type_recall": per_type,
    }


def _default_generate(data_dir: str, name: str, gamma_s: float, **kwargs) -> None:
    """Generate ``<data_dir>/<name>`` with the demo preset's sizes and ``gamma_s``; keyword
    arguments override the preset (``gammas`` is merged, ``synergy`` set to ``gamma_s``)."""
    from mmrec_plugin.data import synthetic

    params = dict(synthetic.preset("demo"))
    gammas = dict(kwargs.pop("gammas", None) or {})
    gammas["synergy"] = float(gamma_s)
    params.update(kwargs)
    params["gammas"] = gammas
    synthetic.generate(data_dir, name, **params)
