"""Synthetic multimodal recommendation data with a known information structure (docs/METHOD.md, "Synthetic data").

The model and the draw live in :mod:`mmrec_plugin.data.simulation` (:class:`SynthConfig`,
:func:`simulate`, re-exported here); this module writes the dataset (:func:`generate`,
:func:`ensure_demo`), its presets (:data:`SIZES`) and reads the ground truth back
(:func:`read_types`).

Output (MMRec's layout, published atomically): ``<name>.inter`` (``userID itemID x_label``),
``image_feat.npy`` (``m_v``), ``text_feat.npy`` (``m_t``), with ``audio_dim`` also
``audio_feat.npy`` (``m_a``; the dataset yaml then declares ``feature_files`` for the three),
float32, ``<name>.types`` (``userID itemID type`` for every interaction), ``<name>.yaml`` and
``meta.json``.

Before anything is drawn, :func:`generate` estimates the memory the draw needs
(:func:`mmrec_plugin.data.simulation.estimate_bytes`) and refuses sizes that do not fit
(:func:`mmrec_plugin.limits.check_allocation`), naming the settings.

Args (of :func:`generate`): those of :class:`SynthConfig`, and ``out_dir``, ``name`` (the
dataset folder is ``<out_dir>/<name>``), ``overwrite``.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Mapping, Optional

import numpy as np

from mmrec_plugin import limits
from mmrec_plugin.data import files
from mmrec_plugin.data.simulation import (  # noqa: F401  (re-exported: the public names)
    DEFAULT_GAMMAS, GENERATOR_VERSION, TYPES, USERS_BLOCK, Simulation, SynthConfig, draw_counts,
    estimate_bytes, mixing_matrices, pair_contributions, simulate)
from mmrec_plugin.errors import ConfigError, DataError, did_you_mean

log = logging.getLogger(__name__)

#: Presets: the demo, and the sizes (users, items, interactions) and feature widths of
#: MMRec's Amazon Baby, Sports and Clothing.
SIZES: Dict[str, Dict[str, object]] = {
    "demo": dict(n_users=1000, n_items=500, n_interactions=20000, k=16,
                 image_dim=128, text_dim=64, min_per_user=5, max_per_user=60),
    "baby": dict(n_users=19445, n_items=7050, n_interactions=160792, k=32,
                 image_dim=4096, text_dim=384, min_per_user=5, max_per_user=200),
    "sports": dict(n_users=35598, n_items=18357, n_interactions=296337, k=32,
                   image_dim=4096, text_dim=384, min_per_user=5, max_per_user=200),
    "clothing": dict(n_users=39387, n_items=23033, n_interactions=278677, k=32,
                     image_dim=4096, text_dim=384, min_per_user=5, max_per_user=200),
}


def _shares(types: np.ndarray) -> Dict[str, float]:
    n = max(int(types.shape[0]), 1)
    c = np.bincount(types.astype(np.int64), minlength=len(TYPES))
    return {x: round(float(c[j]) / n, 4) for j, x in enumerate(TYPES)}


def write_types(path: os.PathLike, users: np.ndarray, items: np.ndarray,
                types: np.ndarray) -> None:
    """Write ``userID itemID type`` rows (tab-separated, header), sorted by (user, item)."""
    order = np.lexsort((items, users))
    names = np.asarray(TYPES)[types[order].astype(np.int64)]
    table = np.stack([users[order].astype(str), items[order].astype(str), names], axis=1)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{files.USER_FIELD}\t{files.ITEM_FIELD}\ttype\n")
        np.savetxt(f, table, fmt="%s", delimiter="\t")


def write_simulation(sim: Simulation, out_dir: os.PathLike, name: str,
                     overwrite: bool = False) -> Path:
    """Publish ``sim`` as the dataset folder ``<out_dir>/<name>`` (atomically)."""
    target = Path(out_dir) / name
    cfg = sim.config
    meta = {
        "generator": "mmrec_plugin.data.synthetic", "version": GENERATOR_VERSION,
        "params": asdict(cfg),
        "n_users": cfg.n_users, "n_items": cfg.n_items, "n_interactions": int(sim.users.shape[0]),
        "splits": {s: int((sim.labels == j).sum()) for j, s in enumerate(files.SPLIT_NAMES)},
        "items_without_interactions": int((np.bincount(sim.items, minlength=cfg.n_items) == 0)
                                          .sum()),
        "type_shares": _shares(sim.types),
        "type_shares_test": _shares(sim.types[sim.labels == 2]),
        "text_feat_shape": list(sim.text_feat.shape), "image_feat_shape": list(sim.image_feat.shape),
    }
    extra = None
    if sim.audio_feat is not None:
        meta["audio_feat_shape"] = list(sim.audio_feat.shape)
        extra = {"feature_files": {"visual": "image_feat.npy", "text": "text_feat.npy",
                                   "audio": "audio_feat.npy"}}
    if meta["items_without_interactions"]:
        log.warning("%d of %d items have no interaction (validate will report them); raise "
                    "n_interactions or lower the gammas' spread", meta["items_without_interactions"],
                    cfg.n_items)
    with files.atomic_dir(target, overwrite=overwrite) as tmp:
        files.write_inter(tmp / f"{name}.inter", sim.users, sim.items, sim.labels)
        write_types(tmp / f"{name}.types", sim.users, sim.items, sim.types)
        files.save_npy(tmp / "image_feat.npy", sim.image_feat)
        files.save_npy(tmp / "text_feat.npy", sim.text_feat)
        if sim.audio_feat is not None:
            files.save_npy(tmp / "audio_feat.npy", sim.audio_feat)
        files.write_dataset_yaml(tmp / f"{name}.yaml", name, extra)
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    log.info("wrote synthetic dataset %s: %d users, %d items, %d interactions, type shares %s",
             target, cfg.n_users, cfg.n_items, sim.users.shape[0], meta["type_shares"])
    return target


def generate(out_dir: os.PathLike, name: str, n_users: int = 1000, n_items: int = 500,
             n_interactions: Optional[int] = None, k: int = 16,
             gammas: Optional[Mapping[str, float]] = None, noise: float = 0.3,
             choice_noise: float = 0.5, seed: int = 0, image_dim: Optional[int] = None,
             text_dim: Optional[int] = None, min_per_user: int = 5,
             max_per_user: Optional[int] = None, popularity: float = 0.0,
             audio_dim: Optional[int] = None, overwrite: bool = False) -> Path:
    """Generate a synthetic dataset into ``<out_dir>/<name>`` (MMRec layout, atomic).

    Args: see the module docstring. Returns the dataset folder.

    Raises:
        ConfigError: a bad parameter (named). DataError: the target exists (without
        ``overwrite``).
    """
    target = files.target_folder(out_dir, name)
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists; choose another --name/--out or pass --force")
    cfg = SynthConfig(n_users=n_users, n_items=n_items, n_interactions=n_interactions, k=k,
                      gammas=dict(gammas or {}), noise=noise, choice_noise=choice_noise, seed=seed,
                      image_dim=image_dim, text_dim=text_dim, min_per_user=min_per_user,
                      max_per_user=max_per_user, popularity=popularity, audio_dim=audio_dim)
    limits.check_allocation(
        estimate_bytes(cfg), f"synthetic data of {cfg.n_users} users x {cfg.n_items} items, "
        f"{cfg.n_interactions} interactions, k = {cfg.k}, feature widths {cfg.image_dim}/"
        f"{cfg.text_dim}" + (f"/{cfg.audio_dim}" if cfg.audio_dim else ""),
        "lower --users, --items, --interactions, --k or the feature widths (--image-dim, "
        "--text-dim, --audio-dim)")
    return write_simulation(simulate(cfg), out_dir, name, overwrite=overwrite)


def preset(size: str) -> Dict[str, object]:
    """The parameters of a preset in :data:`SIZES` (a copy)."""
    if size not in SIZES:
        raise ConfigError(f"unknown size '{size}'{did_you_mean(size, SIZES)}; "
                          f"accepted: {', '.join(SIZES)}")
    return dict(SIZES[size])


def ensure_demo(folder: os.PathLike, seed: int = 0) -> Path:
    """Generate the default demo dataset into ``folder`` unless it is already there.

    The dataset name is the folder's base name (``data/demo`` -> ``demo.inter``). Safe when
    several processes call it at once (the first to finish publishes the folder).

    Raises:
        DataError: ``folder`` exists, is not empty and holds no ``<name>.inter``.
    """
    folder = Path(folder)
    name = folder.name
    inter = folder / f"{name}.inter"
    if inter.is_file():
        return folder
    limits.check_output_dir(folder.parent, "data folder (data_path)")
    overwrite = False
    if folder.exists():
        if not folder.is_dir() or any(folder.iterdir()):
            raise DataError(f"{folder} exists but holds no {inter.name}; move it away so the demo "
                            "data can be generated there")
        overwrite = True  # an empty folder: replace it
    params = preset("demo")
    log.info("generating the demo dataset into %s (once)", folder)
    try:
        return generate(folder.parent, name, seed=seed, overwrite=overwrite, **params)
    except DataError:
        if inter.is_file():  # another process published it first
            return folder
        raise


def read_types(folder: os.PathLike, name: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Read ``<folder>/<name>.types``: ``{'users', 'items' (int64), 'types' (str), 'codes' (int8)}``.

    ``codes`` index :data:`TYPES`. ``name`` defaults to the folder's base name.
    """
    folder = Path(folder)
    name = name or folder.name
    path = folder / f"{name}.types"
    if not path.is_file():
        raise DataError(f"{path}: ground-truth type file not found (only synthetic datasets "
                        "made by `mmrec-plugin data generate` have one)")
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
    expected = [files.USER_FIELD, files.ITEM_FIELD, "type"]
    if header != expected:
        raise DataError(f"{path}, line 1: header {header}; expected {expected}")
    table = np.loadtxt(path, delimiter="\t", skiprows=1, dtype=str, ndmin=2, comments=None)
    if table.shape[0] and table.shape[1] != 3:
        raise DataError(f"{path}: expected 3 tab-separated columns, got {table.shape[1]}")
    try:
        users = table[:, 0].astype(np.int64)
        items = table[:, 1].astype(np.int64)
    except ValueError as exc:
        raise DataError(f"{path}: non-integer id ({exc})") from exc
    codes = np.full(table.shape[0], -1, dtype=np.int8)
    for j, x in enumerate(TYPES):
        codes[table[:, 2] == x] = j
    bad = np.flatnonzero(codes < 0)
    if bad.size:
        raise DataError(f"{path}, line {int(bad[0]) + 2}: type {table[bad[0], 2]!r}; "
                        f"accepted: {', '.join(TYPES)}")
    return {"users": users, "items": items, "types": table[:, 2].astype(str), "codes": codes}
