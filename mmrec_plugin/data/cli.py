"""``mmrec-plugin data``: generate, import, resplit, validate and describe datasets.

Subcommands::

    data generate --name NAME --out DATA_DIR [--size demo|baby|sports|clothing] [--audio-dim D]
                  [--users N --items N --interactions N --k N --gamma-text X --gamma-visual X
                   --gamma-synergy X --gamma-redundant X --noise X --choice-noise X --seed N
                   --image-dim N --text-dim N --min-per-user N --max-per-user N
                   --popularity X] [--force]
    data import SRC --name NAME --out DATA_DIR [--format diffmm|lattice|inter]
                  [--text FILE --visual FILE] [--seed N] [--force]
    data resplit DATASET_DIR --out DATA_DIR --name NAME [--loo | --cold-items FRACTION] [--seed N] [--force]
    data validate DATASET_DIR          (exit 1 when the dataset has an error)
    data stats DATASET_DIR [--json]

The top-level CLI wires ``data`` to :func:`add_arguments` / :func:`run`; user errors raise
:class:`mmrec_plugin.errors.UserError` (the top-level CLI prints them). ``python -m
mmrec_plugin.data.cli ...`` runs the same commands standalone (:func:`main`).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re

log = logging.getLogger(__name__)


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _int(text: str) -> int:
    """An integer written with ASCII digits (argparse's ``int`` also takes ``1_000`` and
    Arabic-Indic digits, which the data files refuse)."""
    if not _INT.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"expected an integer (ASCII digits), got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _float(text: str) -> float:
    """A finite number written with ASCII digits (no nan/inf)."""
    if not _FLOAT.fullmatch(text.strip()) or not math.isfinite(float(text)):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return float(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND")
    sub.required = True

    g = sub.add_parser("generate", help="generate a synthetic dataset with known pair types "
                       "(docs/METHOD.md, Synthetic data)", description="Generate a synthetic multimodal dataset in "
                       "MMRec's layout, with the ground-truth type of every interaction.")
    g.add_argument("--name", help="dataset name (default: demo for --size demo, else synth-SIZE)")
    g.add_argument("--out", default="data", metavar="DATA_DIR",
                   help="data folder; the dataset goes to DATA_DIR/NAME (default: data)")
    g.add_argument("--size", default="demo", choices=["demo", "baby", "sports", "clothing"],
                   help="preset sizes and feature widths (default: demo)")
    g.add_argument("--users", type=_int, dest="n_users", help="number of users")
    g.add_argument("--items", type=_int, dest="n_items", help="number of items")
    g.add_argument("--interactions", type=_int, dest="n_interactions",
                   help="target number of interactions")
    g.add_argument("--k", type=_int, help="latent size per block (even)")
    for t in ("text", "visual", "synergy", "redundant"):
        g.add_argument(f"--gamma-{t}", type=_float, metavar="X", help=f"weight of the {t} block")
    g.add_argument("--noise", type=_float, help="feature noise std (default 0.3)")
    g.add_argument("--choice-noise", type=_float, help="Gumbel temperature of the positives "
                   "(default 0.5; 0 = exact top-K)")
    g.add_argument("--popularity", type=_float, help="std of an item popularity bias "
                   "(default 0: none)")
    g.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    g.add_argument("--image-dim", type=_int, help="image feature width (projection)")
    g.add_argument("--text-dim", type=_int, help="text feature width (projection)")
    g.add_argument("--audio-dim", type=_int, help="add a third modality, audio_feat.npy, of this width "
                   "(the dataset yaml then declares feature_files for the three)")
    g.add_argument("--min-per-user", type=_int, help="fewest interactions per user")
    g.add_argument("--max-per-user", type=_int, help="most interactions per user")
    g.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    g.set_defaults(data_func=_run_generate)

    i = sub.add_parser("import", help="import a DiffMM/MMSSL (pickles) or LATTICE/FREEDOM (JSON) "
                       "dataset", description="Import a dataset folder into MMRec's layout.")
    i.add_argument("src", metavar="SRC", help="source folder")
    i.add_argument("--name", required=True, help="new dataset name")
    i.add_argument("--out", default="data", metavar="DATA_DIR", help="data folder (default: data)")
    i.add_argument("--format", choices=["diffmm", "lattice", "inter"], dest="fmt",
                   help="source layout (detected when omitted); inter: an .inter table whose "
                   "ids are remapped to 0..n-1")
    i.add_argument("--text", metavar="FILE", help="modality file for the text slot "
                   "(default text_feat.npy)")
    i.add_argument("--visual", metavar="FILE", help="modality file for the visual slot "
                   "(default image_feat.npy)")
    i.add_argument("--seed", type=_seed, default=0, help="inter without x_label: seed of the "
                   "per-user 8:1:1 split (default 0)")
    i.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    i.set_defaults(data_func=_run_import)

    r = sub.add_parser("resplit", help="new per-user splits (MMRec's 8:1:1 rule or leave-one-out)",
                       description="Pool a dataset's interactions and split them again, into a "
                       "new dataset folder.")
    r.add_argument("dataset", metavar="DATASET_DIR", help="source dataset folder")
    r.add_argument("--out", default="data", metavar="DATA_DIR", help="data folder (default: data)")
    r.add_argument("--name", required=True, help="new dataset name")
    r.add_argument("--loo", action="store_true", help="leave-one-out: one valid and one test "
                   "item per user with >= 3 interactions")
    r.add_argument("--cold-items", dest="cold_items", type=float, default=None, metavar="FRACTION",
                   help="a cold-item split instead: this share of the items (in (0, 0.9]) loses "
                        "all training interactions, which go to valid and test (half each, per "
                        "user); the other interactions keep their labels")
    r.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    r.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    r.set_defaults(data_func=_run_resplit)

    v = sub.add_parser("validate", help="check a dataset folder; exit 1 on an error")
    v.add_argument("dataset", metavar="DATASET_DIR")
    v.set_defaults(data_func=_run_validate)

    s = sub.add_parser("stats", help="users, items, interactions, density, splits, features")
    s.add_argument("dataset", metavar="DATASET_DIR")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(data_func=_run_stats)


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``data`` subcommand; returns the exit status."""
    return int(args.data_func(args))


def _run_generate(args: argparse.Namespace) -> int:
    from mmrec_plugin.data import synthetic

    params = synthetic.preset(args.size)
    for key in ("n_users", "n_items", "n_interactions", "k", "noise", "choice_noise",
                "image_dim", "text_dim", "audio_dim", "min_per_user", "max_per_user", "popularity"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    gammas = {t: getattr(args, f"gamma_{t}") for t in synthetic.TYPES
              if getattr(args, f"gamma_{t}") is not None}
    if (args.n_users is not None or args.n_items is not None) and args.n_interactions is None:
        params.pop("n_interactions", None)  # the preset's total no longer fits the sizes
        if args.max_per_user is None:
            params.pop("max_per_user", None)
    name = args.name if args.name is not None else (
        "demo" if args.size == "demo" else f"synth-{args.size}")
    path = synthetic.generate(args.out, name, gammas=gammas, seed=args.seed,
                              overwrite=args.force, **params)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    print(f"wrote {path}: {meta['n_users']} users, {meta['n_items']} items, "
          f"{meta['n_interactions']} interactions; pair types "
          + ", ".join(f"{t} {v:.1%}" for t, v in meta["type_shares"].items()))
    if "audio_feat_shape" in meta:
        print(f"three modalities (visual, text, audio); BRMRS needs a weight for each, e.g. "
              f"python main.py -m BRMRS -d {name} --data-path {args.out} "
              f"--modality_weights \"{{text: 0.4, visual: 0.3, audio: 0.3}}\"")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from mmrec_plugin.data import checks, importers

    path = importers.import_dataset(args.src, args.out, args.name, fmt=args.fmt, text=args.text,
                                    visual=args.visual, overwrite=args.force, seed=args.seed)
    print(f"imported {args.src} as {path}")
    report = checks.validate(path)
    print(report.format())
    return 0 if report.ok else 1


def _run_resplit(args: argparse.Namespace) -> int:
    from mmrec_plugin.data import checks
    from mmrec_plugin.data.split import resplit_dataset

    if args.cold_items is not None:
        from mmrec_plugin.data.cold import cold_resplit_dataset

        if args.loo:
            from mmrec_plugin.errors import UserError

            raise UserError("--cold-items and --loo are two kinds of split; give one")
        path = cold_resplit_dataset(args.dataset, args.out, args.name, args.cold_items,
                                    seed=args.seed, overwrite=args.force)
        s = checks.stats(path)
        n_cold = sum(1 for _ in open(path / f"{args.name}.cold")) - 1
        print(f"wrote {path} (cold items {n_cold} of {s['items']}, seed {args.seed}): train "
              f"{s['splits']['train']}, valid {s['splits']['valid']}, test {s['splits']['test']}")
        return 0
    path = resplit_dataset(args.dataset, args.out, args.name, loo=args.loo, seed=args.seed,
                           overwrite=args.force)
    s = checks.stats(path)
    print(f"wrote {path} ({'leave-one-out' if args.loo else 'per-user 8:1:1'}, seed {args.seed}): "
          f"train {s['splits']['train']}, valid {s['splits']['valid']}, test {s['splits']['test']}")
    return 0


def _run_validate(args: argparse.Namespace) -> int:
    from mmrec_plugin.data import checks, files

    files.check_folder(args.dataset)  # a wrong path is a user error (exit 2), not a data error
    report = checks.validate(args.dataset)
    print(report.format())
    return 0 if report.ok else 1


def _run_stats(args: argparse.Namespace) -> int:
    from mmrec_plugin.data import checks

    s = checks.stats(args.dataset)
    print(json.dumps(s, indent=2) if args.json else checks.format_stats(s))
    return 0
