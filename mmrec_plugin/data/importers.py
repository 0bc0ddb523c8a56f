"""Import published multimodal recommendation datasets into MMRec's layout.

Two source layouts:

- ``diffmm``: the pickled scipy-matrix layout of DiffMM / MMSSL-family code:
  ``trnMat.pkl``, ``valMat.pkl`` (optional), ``tstMat.pkl`` (each a pickled
  ``users x items`` scipy sparse matrix; a nonzero entry is an interaction) plus modality
  ``.npy`` files. The matrices' shape gives ``n_users x n_items``.
- ``lattice``: the JSON layout of LATTICE / FREEDOM-family code: ``train.json``,
  ``val.json``, ``test.json`` (``{user: [item, ...]}``, keys may be strings), in the source
  folder or its ``5-core/`` subfolder, plus ``.npy`` features in the source folder.

Pickles are read with :class:`RestrictedUnpickler`, which resolves only the numpy and
scipy.sparse classes such files need (ndarray reconstruction, dtypes, scalars, the
coo/csr/csc matrix classes): a pickle naming any other global (``os.system``, ``eval``,
``builtins.open`` ...) is refused with a DataError before anything of it runs. Feature
``.npy`` files are read with ``allow_pickle=False``.

Any two modality files can be mapped to the text and visual slots (``text=``, ``visual=``);
by default ``text_feat.npy`` and ``image_feat.npy``. The output folder holds
``<name>.inter`` (``userID itemID x_label``), ``image_feat.npy``, ``text_feat.npy``
(float32) and ``<name>.yaml``, published atomically.
"""
from __future__ import annotations

import importlib
import itertools
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from mmrec_plugin import limits
from mmrec_plugin.data import files
from mmrec_plugin.errors import ConfigError, DataError, did_you_mean
from mmrec_plugin.host.files import load_features, open_features

log = logging.getLogger(__name__)

FORMATS = ("diffmm", "lattice", "inter")
DIFFMM_FILES = {"train": "trnMat.pkl", "valid": "valMat.pkl", "test": "tstMat.pkl"}
LATTICE_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}

_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
}
_SPARSE_CLASSES = ("coo_matrix", "csr_matrix", "csc_matrix", "coo_array", "csr_array",
                   "csc_array")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the numpy / scipy.sparse globals of matrix pickles.

    Admitted: ``numpy.core.multiarray._reconstruct`` / ``scalar``, ``numpy.core.numeric.
    _frombuffer`` (also under numpy 2's ``numpy._core``), ``numpy.ndarray``, ``numpy.dtype``,
    the scipy.sparse ``coo/csr/csc`` matrix (and array) classes from any ``scipy.sparse``
    module, ``copyreg._reconstructor`` with ``builtins.object`` (protocol 0/1 object
    reconstruction) and ``_codecs.encode`` (how protocol 2 stores bytes). Anything else
    raises DataError naming the global; nothing of the pickle has run by then except the
    construction of admitted objects.
    """

    def __init__(self, file, source: str = "<pickle>") -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str):  # noqa: D102 (pickle API)
        module = {"copy_reg": "copyreg", "__builtin__": "builtins"}.get(module, module)  # py2 names
        canon = module.replace("numpy._core", "numpy.core")
        if (canon, name) in _NUMPY_ALLOWED:
            for mod in (canon.replace("numpy.core", "numpy._core"), canon):  # numpy 2, then 1
                try:
                    return getattr(importlib.import_module(mod), name)
                except (ImportError, AttributeError):
                    continue
        if (module == "scipy.sparse" or module.startswith("scipy.sparse.")) \
                and name in _SPARSE_CLASSES:
            import scipy.sparse as sp

            if hasattr(sp, name):
                return getattr(sp, name)
            raise DataError(f"{self._source}: needs scipy.sparse.{name}, which this SciPy lacks")
        if (module, name) in {("copyreg", "_reconstructor"), ("builtins", "object"),
                              ("_codecs", "encode")}:
            return getattr(importlib.import_module(module), name)
        raise DataError(f"{self._source}: refused to load a pickle that references "
                        f"{module}.{name}; only numpy arrays and scipy.sparse coo/csr/csc "
                        "matrices are accepted (the pickle was not executed)")


def load_pickled_matrix(path: os.PathLike):
    """A scipy sparse matrix from a pickle, via :class:`RestrictedUnpickler`, as ``csr_matrix``.

    Raises:
        DataError: a refused global, a malformed pickle, or an object that is not a 2-d
            sparse matrix or array.
    """
    import scipy.sparse as sp

    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, str(path)).load()
    except DataError:
        raise
    except Exception as exc:  # malformed pickles raise many exception types
        raise DataError(f"{path}: not a readable pickle of a sparse matrix ({type(exc).__name__}: "
                        f"{exc})") from exc
    if sp.issparse(obj) and len(obj.shape) == 2:
        limits.check_allocation((int(obj.shape[0]) + 1) * 8 + int(obj.nnz) * 24,
                                f"the {obj.shape[0]} x {obj.shape[1]} matrix of {path}",
                                "the matrix's shape must be users x items")
        mat = sp.csr_matrix(obj)
    elif isinstance(obj, np.ndarray) and obj.ndim == 2:
        mat = sp.csr_matrix(obj)
    else:
        raise DataError(f"{path}: holds a {type(obj).__name__}; expected a 2-d scipy sparse matrix "
                        "(users x items)")
    mat.sum_duplicates()
    mat.eliminate_zeros()
    return mat


def detect_format(src: os.PathLike) -> str:
    """``'diffmm'`` or ``'lattice'`` from the files present in ``src``."""
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    has_pkl = (src / DIFFMM_FILES["train"]).is_file()
    has_json = _json_dir(src) is not None
    if has_pkl and has_json:
        raise DataError(f"{src}: holds both {DIFFMM_FILES['train']} and {LATTICE_FILES['train']}; "
                        "pass --format diffmm or --format lattice")
    if has_pkl:
        return "diffmm"
    if has_json:
        return "lattice"
    if any(src.glob("*.inter")):
        return "inter"
    raise DataError(f"{src}: no known layout: expected {DIFFMM_FILES['train']} (+ "
                    f"{DIFFMM_FILES['valid']}, {DIFFMM_FILES['test']}; DiffMM/MMSSL) or "
                    f"{LATTICE_FILES['train']} (+ {LATTICE_FILES['valid']}, "
                    f"{LATTICE_FILES['test']}, possibly under 5-core/; LATTICE/FREEDOM) or an "
                    ".inter table (ids remapped)")


def _json_dir(src: Path) -> Optional[Path]:
    for d in (src, src / "5-core"):
        if (d / LATTICE_FILES["train"]).is_file():
            return d
    return None


def _read_diffmm(src: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    mats = {}
    for split, fname in DIFFMM_FILES.items():
        path = src / fname
        if not path.is_file():
            if split == "valid":
                log.warning("%s: no %s; the imported dataset has no validation split "
                            "(make one with `mmrec-plugin data resplit`)", src, fname)
                continue
            raise DataError(f"{path}: not found (the DiffMM layout needs "
                            f"{', '.join(DIFFMM_FILES.values())})")
        mats[split] = load_pickled_matrix(path)
    shapes = {s: m.shape for s, m in mats.items()}
    if len(set(shapes.values())) != 1:
        raise DataError(f"{src}: the split matrices differ in shape: "
                        + ", ".join(f"{DIFFMM_FILES[s]} {shp}" for s, shp in shapes.items()))
    n_users, n_items = mats["train"].shape
    us, its, labs = [], [], []
    for j, split in enumerate(files.SPLIT_NAMES):
        if split not in mats:
            continue
        coo = mats[split].tocoo()
        us.append(coo.row.astype(np.int64))
        its.append(coo.col.astype(np.int64))
        labs.append(np.full(coo.nnz, j, dtype=np.int8))
    return np.concatenate(us), np.concatenate(its), np.concatenate(labs), n_users, n_items


def _read_lattice_json(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected an object {{user: [item, ...]}}, got "
                        f"{type(obj).__name__}")
    try:
        keys = np.fromiter((int(k) for k in obj.keys()), dtype=np.int64, count=len(obj))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a user key is not an integer ({exc})") from exc
    lengths = np.fromiter((len(v) if isinstance(v, list) else -1 for v in obj.values()),
                          dtype=np.int64, count=len(obj))
    if (lengths < 0).any():
        j = int(np.flatnonzero(lengths < 0)[0])
        raise DataError(f"{path}: user {list(obj.keys())[j]!r} maps to a non-list; expected a "
                        "list of item ids")
    try:
        items = np.fromiter((int(i) for i in itertools.chain.from_iterable(obj.values())),
                            dtype=np.int64, count=int(lengths.sum()))
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: an item id is not an integer ({exc})") from exc
    return np.repeat(keys, lengths), items


def _read_lattice(src: Path) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    jdir = _json_dir(src)
    if jdir is None:
        raise DataError(f"{src}: {LATTICE_FILES['train']} not found (also looked in 5-core/)")
    us, its, labs = [], [], []
    for j, split in enumerate(files.SPLIT_NAMES):
        path = jdir / LATTICE_FILES[split]
        if not path.is_file():
            raise DataError(f"{path}: not found (the LATTICE layout needs "
                            f"{', '.join(LATTICE_FILES.values())})")
        u, i = _read_lattice_json(path)
        us.append(u)
        its.append(i)
        labs.append(np.full(u.shape[0], j, dtype=np.int8))
    users, items = np.concatenate(us), np.concatenate(its)
    if users.size and (users.min() < 0 or items.min() < 0):
        raise DataError(f"{jdir}: negative user or item id")
    n_users = int(users.max()) + 1 if users.size else 0
    n_items = int(items.max()) + 1 if items.size else 0
    return users, items, np.concatenate(labs), n_users, n_items


def _resolve_feature(src: Path, given: Optional[str], default: str, slot: str) -> Path:
    if given:
        p = Path(given)
        if not p.is_absolute() and not p.exists():
            p = src / given
        if not p.is_file():
            raise DataError(f"--{slot} {given}: file not found (looked in {src} and the working "
                            "directory)")
        return p
    p = src / default
    if p.is_file():
        return p
    found = sorted(q.name for q in src.glob("*.npy"))
    raise DataError(f"{src}: no {default} for the {slot} slot; modality files here: "
                    f"{found or 'none'}; map one with --{slot} FILE")


def _load_features(path: Path, n_items: int, slot: str) -> np.ndarray:
    """The features of ``path`` through the host's loader (the checks ``run`` applies)."""
    arr = open_features(path)
    if arr.ndim == 2 and arr.shape[0] > n_items:
        raise DataError(f"{path} ({slot}): {arr.shape[0]} rows, but the interactions use "
                        f"{n_items} items (ids 0..{n_items - 1}); row i must be item i; items "
                        f"{n_items}..{arr.shape[0] - 1} have no interaction, and MMRec counts "
                        "items as the largest item id + 1")
    return load_features(path, n_items)


def import_dataset(src: os.PathLike, out_dir: os.PathLike, name: str,
                   fmt: Optional[str] = None, text: Optional[str] = None,
                   visual: Optional[str] = None, overwrite: bool = False,
                   seed: int = 0) -> Path:
    """Import ``src`` (DiffMM or LATTICE layout, or a raw ``.inter`` table:
    :mod:`mmrec_plugin.data.remap`) as ``<out_dir>/<name>`` in MMRec's layout.

    Args:
        src: the source folder.
        out_dir, name: the new dataset folder is ``<out_dir>/<name>``.
        fmt: ``'diffmm'``, ``'lattice'`` or ``'inter'``; detected from the files when None.
        text, visual: modality files for the two slots (relative to ``src`` or paths);
            default ``text_feat.npy`` / ``image_feat.npy``.
        overwrite: replace an existing ``<out_dir>/<name>``.
        seed: the split of an ``inter`` table without ``x_label`` (MMRec's per-user rule).

    Returns the dataset folder. Raises DataError / ConfigError naming the file or option.
    """

    target = files.target_folder(out_dir, name)
    src = Path(src)
    if fmt is None:
        fmt = detect_format(src)
    elif fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown{did_you_mean(fmt, FORMATS)}; "
                          f"accepted: {', '.join(FORMATS)}")
    if target.exists() and not overwrite:
        raise DataError(f"{target} already exists; choose another --name/--out or pass --force")
    if not src.is_dir():
        raise DataError(f"{src}: source folder not found")
    if fmt == "inter":
        from mmrec_plugin.data.remap import import_inter

        return import_inter(src, target, name, text=text, visual=visual, overwrite=overwrite,
                            seed=seed)
    if fmt == "diffmm":
        users, items, labels, n_users, n_items = _read_diffmm(src)
    else:
        users, items, labels, n_users, n_items = _read_lattice(src)
    if users.size == 0:
        raise DataError(f"{src}: no interactions found")
    tpath = _resolve_feature(src, text, "text_feat.npy", "text")
    vpath = _resolve_feature(src, visual, "image_feat.npy", "visual")
    n_items = int(items.max()) + 1  # MMRec's count: the largest item id + 1
    tfeat = _load_features(tpath, n_items, "text")
    vfeat = _load_features(vpath, n_items, "visual")
    with files.atomic_dir(target, overwrite=overwrite) as tmp:
        files.write_inter(tmp / f"{name}.inter", users, items, labels)
        files.save_npy(tmp / "image_feat.npy", vfeat)
        files.save_npy(tmp / "text_feat.npy", tfeat)
        files.write_dataset_yaml(tmp / f"{name}.yaml", name)
    log.info("imported %s (%s) as %s: %d users, %d items, %d interactions", src, fmt, target,
             n_users, n_items, users.shape[0])
    return target
