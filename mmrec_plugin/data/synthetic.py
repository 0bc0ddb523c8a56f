"""Synthetic multimodal recommendation data with a known information structure (docs/METHOD.md, "Synthetic data").

Items carry four latent blocks, each ``z_* ~ N(0, I_k)``: text-unique ``z_t``, visual-unique
``z_v``, synergy ``z_s`` and redundant ``z_r``. The two modalities are

    m_t = [z_t; A z_s; z_r] + eps_t,      m_v = [z_v; B z_s; z_r] + eps_v,

``eps ~ N(0, noise^2 I)``, where ``A, B`` are ``k x k`` of rank ``k/2`` with
``rank([A; B]) = k``: ``A = G_A P_1^T``, ``B = G_B P_2^T`` with ``[P_1 P_2]`` a random
orthogonal matrix split in halves and ``G_A, G_B ~ N(0, 2/k)`` of shape ``k x k/2``. Each
modality alone sees one half of ``z_s`` (the other half lies in its null space); both
together see all of it. Optionally each modality is followed by a fixed random projection
``R ~ N(0, 1/(3k))`` of shape ``3k x d`` to the requested feature width (e.g. 4096 image /
384 text, the widths of MMRec's Amazon features); the projection is injective for
``d >= 3k`` so no information is lost.

Users ``theta_u = [theta_t; theta_v; theta_s; theta_r] ~ N(0, I_4k)``; the true score is

    s*(u, i) = sum_x gamma_x <theta_x^u, z_x^i>,   x in {text, visual, synergy, redundant}.

Each user ``u`` draws a number of positives ``K_u = min_per_user + Geometric(p) - 1``
(capped at ``max_per_user``; ``p`` chosen so the mean is ``n_interactions / n_users``) and
takes the top-``K_u`` items of ``s*(u, .) / sigma + choice_noise * Gumbel`` with
``sigma = sqrt(k sum_x gamma_x^2)`` (the standard deviation of ``s*``); i.e. a
Plackett-Luce sample without replacement at temperature ``choice_noise`` (0: exactly the
top-K of ``s*``). The positives are split per user by MMRec's rule
(:func:`mmrec_plugin.data.split.mmrec_split`). The ground-truth type of a pair is
``argmax_x gamma_x <theta_x^u, z_x^i>``.

Scores are computed in fixed blocks of users (``users_block x n_items``, never the whole
``users x items`` matrix); the Gumbel noise of block ``b`` comes from its own seeded stream,
so the output is a deterministic function of the parameters and the seed.

Optional third modality (``audio_dim`` set): ``m_a = [z_r; (z_t + z_v) / sqrt(2)] + eps_a``,
projected to ``audio_dim``: redundant signal plus a blend of the two unique blocks (it
identifies neither alone), from streams of its own, so the other files do not change.

Output (MMRec's layout, published atomically): ``<name>.inter`` (``userID itemID x_label``),
``image_feat.npy`` (``m_v``), ``text_feat.npy`` (``m_t``), with ``audio_dim`` also
``audio_feat.npy`` (``m_a``; the dataset yaml then declares ``feature_files`` for the three),
float32, ``<name>.types`` (``userID itemID type`` for every interaction), ``<name>.yaml`` and
``meta.json``.

Args (of :func:`generate`):
    n_users, n_items: sizes.
    n_interactions: target total (default ``20 n_users``, at most a quarter of all pairs).
    k: latent size per block, even (default 16).
    gammas: weights ``{'text', 'visual', 'synergy', 'redundant'}`` (default all 1.0).
    noise: feature noise std (default 0.3).
    choice_noise: Gumbel temperature of the positive draw (default 0.5).
    seed: everything is a function of it (default 0).
    image_dim, text_dim: projection widths (None: the raw ``3k``).
    audio_dim: width of the optional third modality (None: two modalities).
    min_per_user, max_per_user: bounds of ``K_u`` (default 5 and
        ``min(n_items // 2, max(4 mean, 50))``).
    popularity: std of an optional item bias ``b_i ~ N(0, popularity^2)`` added to the
        standardised score before the draw (default 0: none). It skews item degrees towards
        real data's long tail; it belongs to no type, so the types stay
        ``argmax_x gamma_x <theta_x, z_x>``.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from mmrec_plugin.errors import ConfigError, DataError, did_you_mean
from mmrec_plugin.data import files
from mmrec_plugin.data.split import mmrec_split

log = logging.getLogger(__name__)

TYPES: Tuple[str, ...] = ("text", "visual", "synergy", "redundant")
DEFAULT_GAMMAS: Dict[str, float] = {"text": 1.0, "visual": 1.0, "synergy": 1.0, "redundant": 1.0}
GENERATOR_VERSION = 1
USERS_BLOCK = 512  # part of the random stream layout: changing it changes the data

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

# stream tags (SeedSequence spawn keys)
_S_ITEMS, _S_MIX, _S_USERS, _S_COUNTS, _S_EPS_T, _S_EPS_V, _S_PROJ_T, _S_PROJ_V, _S_SPLIT, \
    _S_GUMBEL, _S_BIAS, _S_EPS_A, _S_PROJ_A = range(13)


@dataclass
class SynthConfig:
    """All parameters of one synthetic dataset (see the module docstring)."""

    n_users: int
    n_items: int
    n_interactions: Optional[int] = None
    k: int = 16
    gammas: Dict[str, float] = field(default_factory=lambda: dict(DEFAULT_GAMMAS))
    noise: float = 0.3
    choice_noise: float = 0.5
    seed: int = 0
    image_dim: Optional[int] = None
    text_dim: Optional[int] = None
    min_per_user: int = 5
    max_per_user: Optional[int] = None
    popularity: float = 0.0
    audio_dim: Optional[int] = None

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"synthetic data: {key} = {getattr(self, key)!r}; {what}")

        need(isinstance(self.n_users, int) and self.n_users >= 1, "n_users", "need an integer >= 1")
        need(isinstance(self.n_items, int) and self.n_items >= 2, "n_items", "need an integer >= 2")
        need(isinstance(self.k, int) and self.k >= 2 and self.k % 2 == 0, "k",
             "need an even integer >= 2 (A and B have rank k/2)")
        need(self.noise >= 0, "noise", "need a number >= 0")
        need(self.choice_noise >= 0, "choice_noise", "need a number >= 0")
        need(self.popularity >= 0, "popularity", "need a number >= 0")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "need an integer >= 0")
        for key in ("image_dim", "text_dim", "audio_dim"):
            v = getattr(self, key)
            need(v is None or (isinstance(v, int) and v >= 1), key, "need an integer >= 1 or None")
        gammas = dict(DEFAULT_GAMMAS)
        for key, v in dict(self.gammas).items():
            if key not in TYPES:
                raise ConfigError(f"synthetic data: unknown gamma '{key}'{did_you_mean(key, TYPES)}; "
                                  f"accepted: {', '.join(TYPES)}")
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"synthetic data: gamma {key} = {v!r}; need a finite number >= 0")
            gammas[key] = float(v)
        if not any(gammas.values()):
            raise ConfigError("synthetic data: all gammas are 0; at least one must be > 0")
        self.gammas = gammas
        if self.n_interactions is None:
            self.n_interactions = min(20 * self.n_users, self.n_users * self.n_items // 4)
        need(isinstance(self.min_per_user, int) and 1 <= self.min_per_user <= self.n_items,
             "min_per_user", f"need an integer in [1, n_items={self.n_items}]")
        mean = self.n_interactions / self.n_users
        if self.max_per_user is None:
            self.max_per_user = int(min(self.n_items // 2, max(4 * mean, 50)))
            self.max_per_user = max(self.max_per_user, self.min_per_user)
        need(isinstance(self.max_per_user, int)
             and self.min_per_user <= self.max_per_user <= self.n_items,
             "max_per_user", f"need an integer in [min_per_user={self.min_per_user}, "
             f"n_items={self.n_items}]")
        if not (self.min_per_user <= mean <= self.max_per_user):
            raise ConfigError(
                f"synthetic data: n_interactions = {self.n_interactions} gives {mean:.2f} per user; "
                f"need between min_per_user={self.min_per_user} and max_per_user={self.max_per_user} "
                f"per user ({self.n_users} users)")
        if self.k * 3 > min(self.image_dim or 3 * self.k, self.text_dim or 3 * self.k):
            log.warning("feature width below 3k=%d: the projection loses information", 3 * self.k)


@dataclass
class Simulation:
    """Everything drawn for one dataset (returned by :func:`simulate`, for tests and analysis).

    Shapes: ``z[x]`` ``[n_items, k]``, ``theta[x]`` ``[n_users, k]``, ``A``, ``B`` ``[k, k]``,
    ``text_feat`` ``[n_items, text_dim or 3k]``, ``image_feat`` ``[n_items, image_dim or 3k]``
    (float32); ``users``, ``items`` ``int64 [n]``, ``types`` ``int8 [n]`` (index into
    :data:`TYPES`), ``labels`` ``int8 [n]``, ``counts`` ``int64 [n_users]`` (``K_u``).
    """

    config: SynthConfig
    z: Dict[str, np.ndarray]
    theta: Dict[str, np.ndarray]
    A: np.ndarray
    B: np.ndarray
    text_feat: np.ndarray
    image_feat: np.ndarray
    users: np.ndarray
    items: np.ndarray
    types: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    audio_feat: Optional[np.ndarray] = None


def _stream(seed: int, *tag: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(tag)))


def mixing_matrices(k: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """``A, B`` (``k x k``) with ``rank A = rank B = k/2`` and ``rank [A; B] = k``.

    ``A = G_A P_1^T``, ``B = G_B P_2^T``: ``null(A) = span(P_2)``, ``null(B) = span(P_1)``,
    which intersect only in 0. ``G ~ N(0, 2/k)`` keeps ``Var((A z)_j) = 1`` for ``z ~ N(0, I)``.
    """
    h = k // 2
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    q = q * np.sign(np.diag(r))  # a Haar-distributed orthogonal matrix
    ga = rng.standard_normal((k, h)) * math.sqrt(1.0 / h)
    gb = rng.standard_normal((k, h)) * math.sqrt(1.0 / h)
    return ga @ q[:, :h].T, gb @ q[:, h:].T


def draw_counts(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """``K_u`` per user: ``min + min(Geometric(p) - 1, max - min)``.

    ``p`` is solved (bisection on ``E[min(G - 1, c)] = q (1 - q^c) / (1 - q)``, ``q = 1 - p``,
    ``c = max - min``) so that the mean of the capped counts is ``n_interactions / n_users``.
    """
    c = cfg.max_per_user - cfg.min_per_user
    excess = cfg.n_interactions / cfg.n_users - cfg.min_per_user
    if excess <= 0 or c == 0:
        return np.full(cfg.n_users, cfg.min_per_user, dtype=np.int64)
    if excess >= c:
        return np.full(cfg.n_users, cfg.max_per_user, dtype=np.int64)
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(100):
        q = 0.5 * (lo + hi)
        if q * (1.0 - q ** c) / (1.0 - q) < excess:
            lo = q
        else:
            hi = q
    g = rng.geometric(1.0 - 0.5 * (lo + hi), size=cfg.n_users).astype(np.int64) - 1
    return cfg.min_per_user + np.minimum(g, c)


def pair_contributions(theta: Mapping[str, np.ndarray], z: Mapping[str, np.ndarray],
                       gammas: Mapping[str, float], users: np.ndarray, items: np.ndarray,
                       chunk: int = 65536) -> np.ndarray:
    """``gamma_x <theta_x^u, z_x^i>`` for each pair and type: ``float64 [n, 4]`` (chunked)."""
    out = np.empty((users.shape[0], len(TYPES)), dtype=np.float64)
    for s in range(0, users.shape[0], chunk):
        u, i = users[s:s + chunk], items[s:s + chunk]
        for j, x in enumerate(TYPES):
            out[s:s + chunk, j] = gammas[x] * np.einsum("nk,nk->n", theta[x][u], z[x][i])
    return out


def _project(m: np.ndarray, dim: Optional[int], rng: np.random.Generator) -> np.ndarray:
    if dim is None:
        return m.astype(np.float32)
    r = (rng.standard_normal((m.shape[1], dim)) / math.sqrt(m.shape[1])).astype(np.float32)
    return m.astype(np.float32) @ r


def simulate(cfg: SynthConfig) -> Simulation:
    """Draw one dataset in memory (see the module docstring); nothing is written."""
    k, seed = cfg.k, cfg.seed
    g = cfg.gammas
    rng = _stream(seed, _S_ITEMS)
    z = {x: rng.standard_normal((cfg.n_items, k)) for x in TYPES}
    A, B = mixing_matrices(k, _stream(seed, _S_MIX))
    rng = _stream(seed, _S_USERS)
    theta = {x: rng.standard_normal((cfg.n_users, k)) for x in TYPES}
    counts = draw_counts(cfg, _stream(seed, _S_COUNTS))

    # positives: per user block, top-K_u of s*/sigma + choice_noise * Gumbel
    sigma = math.sqrt(k * sum(v * v for v in g.values()))
    # float32 scores: the blocks are the bulk of the work at Clothing size
    w = np.concatenate([g[x] / sigma * theta[x] for x in TYPES], axis=1).astype(np.float32)
    zt = np.ascontiguousarray(np.concatenate([z[x] for x in TYPES], axis=1).T,
                              dtype=np.float32)                              # [4k, n_items]
    bias = (cfg.popularity * _stream(seed, _S_BIAS).standard_normal(cfg.n_items)
            ).astype(np.float32) if cfg.popularity > 0 else None
    users_parts, items_parts = [], []
    for b, start in enumerate(range(0, cfg.n_users, USERS_BLOCK)):
        stop = min(start + USERS_BLOCK, cfg.n_users)
        scores = w[start:stop] @ zt                                          # [B, n_items]
        if bias is not None:
            scores += bias
        if cfg.choice_noise > 0:  # Gumbel = -log(Exp(1)), drawn in float32 for speed
            e = _stream(seed, _S_GUMBEL, b).standard_exponential(scores.shape, dtype=np.float32)
            np.maximum(e, np.finfo(np.float32).tiny, out=e)
            np.log(e, out=e)
            e *= np.float32(cfg.choice_noise)
            scores -= e
        kb = counts[start:stop]
        kmax = int(kb.max())
        if kmax < cfg.n_items:
            top = np.argpartition(scores, cfg.n_items - kmax, axis=1)[:, cfg.n_items - kmax:]
        else:
            top = np.broadcast_to(np.arange(cfg.n_items), scores.shape).copy()
        vals = np.take_along_axis(scores, top, axis=1)
        top = np.take_along_axis(top, np.argsort(-vals, axis=1, kind="stable"), axis=1)
        keep = np.arange(kmax)[None, :] < kb[:, None]
        users_parts.append(np.repeat(np.arange(start, stop, dtype=np.int64), kb))
        items_parts.append(top[keep].astype(np.int64))
    users = np.concatenate(users_parts)
    items = np.concatenate(items_parts)
    types = np.argmax(pair_contributions(theta, z, g, users, items), axis=1).astype(np.int8)
    labels = mmrec_split(users, _stream(seed, _S_SPLIT))

    m_t = np.concatenate([z["text"], z["synergy"] @ A.T, z["redundant"]], axis=1)
    m_v = np.concatenate([z["visual"], z["synergy"] @ B.T, z["redundant"]], axis=1)
    if cfg.noise > 0:
        m_t += cfg.noise * _stream(seed, _S_EPS_T).standard_normal(m_t.shape)
        m_v += cfg.noise * _stream(seed, _S_EPS_V).standard_normal(m_v.shape)
    text_feat = _project(m_t, cfg.text_dim, _stream(seed, _S_PROJ_T))
    image_feat = _project(m_v, cfg.image_dim, _stream(seed, _S_PROJ_V))
    audio_feat = None
    if cfg.audio_dim is not None:
        m_a = np.concatenate([z["redundant"], (z["text"] + z["visual"]) / math.sqrt(2.0)], axis=1)
        if cfg.noise > 0:
            m_a += cfg.noise * _stream(seed, _S_EPS_A).standard_normal(m_a.shape)
        audio_feat = _project(m_a, cfg.audio_dim, _stream(seed, _S_PROJ_A))
    return Simulation(cfg, z, theta, A, B, text_feat, image_feat, users, items, types, labels,
                      counts, audio_feat)


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
    files.check_name(name)
    target = Path(out_dir) / name
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists; choose another --name/--out or pass --force")
    cfg = SynthConfig(n_users=n_users, n_items=n_items, n_interactions=n_interactions, k=k,
                      gammas=dict(gammas or {}), noise=noise, choice_noise=choice_noise, seed=seed,
                      image_dim=image_dim, text_dim=text_dim, min_per_user=min_per_user,
                      max_per_user=max_per_user, popularity=popularity, audio_dim=audio_dim)
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
