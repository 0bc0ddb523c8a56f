"""The model of the synthetic data (docs/METHOD.md, "Synthetic data"): :func:`simulate` draws
one dataset in memory; :mod:`mmrec_plugin.data.synthetic` writes it.

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

Args (of :class:`SynthConfig`; :func:`mmrec_plugin.data.synthetic.generate` takes the same):
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

import logging
import math
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from mmrec_plugin.data.split import mmrec_split
from mmrec_plugin.errors import ConfigError, did_you_mean

log = logging.getLogger(__name__)

TYPES: Tuple[str, ...] = ("text", "visual", "synergy", "redundant")
DEFAULT_GAMMAS: Dict[str, float] = {"text": 1.0, "visual": 1.0, "synergy": 1.0, "redundant": 1.0}
GENERATOR_VERSION = 1
USERS_BLOCK = 512  # part of the random stream layout: changing it changes the data

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


def estimate_bytes(cfg: SynthConfig) -> int:
    """An upper estimate of the peak memory of :func:`simulate` plus writing its result, in
    bytes, from the sizes alone (nothing is allocated).

    The terms, from the code above: per item, the latent blocks (float64 ``4k`` plus their
    float32 copy), both modalities before projection (float64 ``3k`` each, twice for the
    noise) and the projected features (float32, twice for the cast); per user, ``theta``
    (float64 ``4k``) and the scaled float32 copy; per block of ``USERS_BLOCK`` users, the
    scores, the Gumbel noise and the top-K indices (``B x n_items`` of 4 + 4 + 8 bytes, and
    the partition's copy); per interaction, ids, types, labels, the per-type contributions
    and the text table of the ``.types`` file (about 300 bytes).
    """
    k, n_items, n_users = cfg.k, cfg.n_items, cfg.n_users
    dims = sum(d if d is not None else 3 * k for d in (cfg.image_dim, cfg.text_dim))
    dims += cfg.audio_dim or 0
    per_item = 4 * k * (8 + 4) + 2 * 3 * k * 8 * 2 + dims * 4 * 2 + 16
    proj = 3 * k * dims * 4
    per_user = 4 * k * (8 + 4) + 16
    block = min(USERS_BLOCK, n_users) * n_items * (4 + 4 + 8 + 8)
    per_pair = 300 + len(TYPES) * 8
    return int(n_items * per_item + proj + n_users * per_user + block
               + int(cfg.n_interactions) * per_pair)

