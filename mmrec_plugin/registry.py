"""Model registry: model name -> class, and the model's yaml of defaults.

A model is found, case-insensitively, in these sources (first hit wins):

1. ``register_model(name, cls, config_path=None)`` calls in code; the host's reference
   models (BPR, LightGCN) register themselves when :mod:`mmrec_plugin.host` is imported
   (the registry sits below the host and never imports it);
2. the entry-point group ``mmrec_plugin.models`` of installed distributions (a third party
   adds a model without touching this repository), e.g. in its ``setup.cfg``::

       [options.entry_points]
       mmrec_plugin.models =
           MyModel = my_package.my_model:MyModel

3. the packaged MMRec-style sources ``mmrec_plugin.mmrec_src.models.<name.lower()>`` (the
   repository's ``src/`` as installed), class attribute ``<Name>`` (when ``mmrec_plugin`` is
   imported from a checkout whose ``src/models`` is not the installed one, that checkout's
   file, so model and code always come from the same tree);
4. ``<cwd>/src/models/<name.lower()>.py`` (running from a checkout of this repository, or of
   any MMRec-style project), class ``<Name>``;
5. ``models.<name.lower()>`` importable from ``sys.path`` (MMRec's own convention, when run
   from an MMRec ``src/`` folder).

MMRec looks the class up by the exact attribute name; here any attribute whose lower-cased
name equals ``name.lower()`` and that is a class is accepted, so ``-m brmrs`` finds ``BRMRS``.

The model yaml (:func:`model_config_path`) is the ``config_path`` given to
:func:`register_model`, else MMRec's layout next to the model's module:
``<dir of the models package>/../configs/model/<Name>.yaml`` (case-insensitive file match),
which covers ``src/models/brmrs.py`` -> ``src/configs/model/BRMRS.yaml`` and
``host/models/lightgcn.py`` -> ``host/configs/model/LightGCN.yaml``.

Example::

    from mmrec_plugin.registry import register_model, get_model
    register_model("MyMF", MyMF)
    get_model("mymf") is MyMF  # True
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import pkgutil
import sys
from typing import Dict, List, Optional, Tuple

from mmrec_plugin.errors import UserError, closest

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mmrec_plugin.models"
PACKAGED_MODELS = "mmrec_plugin.mmrec_src.models"

# lower-case name -> (canonical name, class, yaml path or None)
_REGISTRY: Dict[str, Tuple[str, type, Optional[str]]] = {}


def register_model(name: str, cls: type, config_path: Optional[str] = None) -> type:
    """Register ``cls`` under ``name`` (case-insensitive; a later call replaces an earlier one).

    Args:
        name: the model name used with ``-m``.
        cls: the model class (``cls(config, train_dataloader)``).
        config_path: the model's yaml of defaults; ``None`` looks for MMRec's layout next to
            the class's module (see the module docstring).

    Returns ``cls`` so it can be used as a decorator helper.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"register_model: name must be a non-empty string, got {name!r}")
    if not inspect.isclass(cls):
        raise UserError(f"register_model({name!r}): cls must be a class, got {cls!r}")
    if config_path is not None and not os.path.isfile(config_path):
        raise UserError(f"register_model({name!r}): config_path {config_path} does not exist")
    _REGISTRY[name.lower()] = (name, cls, config_path)
    return cls


def _entry_points() -> list:
    """Entry points of the group, on Python 3.8 (dict API) and 3.10+ (select API)."""
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - python < 3.8
        return []
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # type: ignore[union-attr]


def _class_in(module, name: str) -> Optional[type]:
    """The class attribute of ``module`` named ``name`` (exact first, then case-insensitive)."""
    obj = getattr(module, name, None)
    if inspect.isclass(obj):
        return obj
    low = name.lower()
    for attr, obj in vars(module).items():
        if attr.lower() == low and inspect.isclass(obj):
            return obj
    return None


def _yaml_next_to(cls: type, name: str) -> Optional[str]:
    """MMRec's layout: ``<models dir>/../configs/model/<Name>.yaml`` (case-insensitive)."""
    try:
        src_file = inspect.getfile(cls)
    except (TypeError, OSError):
        return None
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(src_file))), "configs", "model")
    if not os.path.isdir(folder):
        return None
    for candidate in (cls.__name__, name):
        path = os.path.join(folder, f"{candidate}.yaml")
        if os.path.isfile(path):
            return path
    low = name.lower() + ".yaml"
    for fname in sorted(os.listdir(folder)):
        if fname.lower() == low:
            return os.path.join(folder, fname)
    return None


def _import_optional(modname: str):
    """Import ``modname``; ``None`` when it (or a parent package) does not exist.

    An error raised inside an existing module propagates: a broken model file must be seen.
    """
    try:
        return importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        parts = modname.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        if exc.name in prefixes:
            return None
        raise


def _from_file(path: str, name: str):
    """Load ``path`` as a private module (``<cwd>/src/models/<name>.py``)."""
    modname = f"_mmrec_plugin_cwd_models_{name.lower()}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


def _cwd_models_dir() -> str:
    return os.path.join(os.getcwd(), "src", "models")


def _checkout_models_dir() -> str:
    """``src/models`` of the checkout the running ``mmrec_plugin`` was imported from."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # (this file: mmrec_plugin/)
    return os.path.join(root, "src", "models")


def _packaged_models_dirs() -> List[str]:
    if _import_optional(PACKAGED_MODELS) is None:
        return []
    spec = importlib.util.find_spec(PACKAGED_MODELS)
    return list(spec.submodule_search_locations or []) if spec is not None else []


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _packaged_module(low: str):
    """The packaged model module, kept consistent with the running ``mmrec_plugin``.

    When ``mmrec_plugin`` is imported from a checkout (``python main.py`` in a clone) whose
    ``src/models`` differs from the installed ``mmrec_plugin.mmrec_src`` (e.g. an editable
    install of another checkout), that checkout's file is used, so code and model match.
    """
    checkout = _checkout_models_dir()
    path = os.path.join(checkout, f"{low}.py")
    if os.path.isfile(path) and not any(_same_dir(checkout, d) for d in _packaged_models_dirs()):
        return _from_file(path, low)
    return _import_optional(f"{PACKAGED_MODELS}.{low}")


def _models_on_path() -> bool:
    """Whether a top-level ``models`` package is importable (MMRec's src/ on sys.path)."""
    try:
        return importlib.util.find_spec("models") is not None
    except (ImportError, ValueError):
        return False


def _lookup(name: str) -> Optional[Tuple[str, type, Optional[str]]]:
    low = name.lower()
    if low in _REGISTRY:
        canonical, cls, path = _REGISTRY[low]
        return (canonical, cls, path if path is not None else _yaml_next_to(cls, canonical))
    for ep in _entry_points():
        if ep.name.lower() == low:
            cls = ep.load()
            return (ep.name, cls, _yaml_next_to(cls, ep.name))
    if not low.isidentifier():  # module and file sources need a Python identifier
        return None
    module = _packaged_module(low)
    if module is not None:
        cls = _class_in(module, name)
        if cls is not None:
            return (cls.__name__, cls, _yaml_next_to(cls, cls.__name__))
    path = os.path.join(_cwd_models_dir(), f"{low}.py")
    if os.path.isfile(path):
        module = _from_file(path, low)
        cls = _class_in(module, name) if module is not None else None
        if cls is not None:
            return (cls.__name__, cls, _yaml_next_to(cls, cls.__name__))
    if _models_on_path():
        module = _import_optional(f"models.{low}")
        if module is not None:
            cls = _class_in(module, name)
            if cls is not None:
                return (cls.__name__, cls, _yaml_next_to(cls, cls.__name__))
    return None


def get_model(name: str) -> type:
    """The model class for ``name`` (case-insensitive).

    Raises:
        UserError: unknown name; the message lists the available models and the closest.
    """
    if not isinstance(name, str) or not name:
        raise UserError(f"model name must be a non-empty string, got {name!r}")
    hit = _lookup(name)
    if hit is None:
        names = available_models()
        near = closest(name, names)
        hint = f" Closest match: {near}." if near else ""
        raise UserError(
            f"unknown model '{name}'. Available models: {', '.join(names) or '(none)'}.{hint}"
        )
    return hit[1]


def model_config_path(name: str) -> Optional[str]:
    """The yaml of defaults for model ``name``, or ``None`` when the model has none.

    Raises:
        UserError: unknown model name (as :func:`get_model`).
    """
    get_model(name)
    hit = _lookup(name)
    assert hit is not None
    return hit[2]


def canonical_name(name: str) -> str:
    """The registered spelling of ``name`` (e.g. ``'lightgcn'`` -> ``'LightGCN'``)."""
    get_model(name)
    hit = _lookup(name)
    assert hit is not None
    return hit[0]


def _module_names(folder: str) -> List[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(
        m.name for m in pkgutil.iter_modules([folder]) if not m.name.startswith("_")
    )


def available_models() -> List[str]:
    """The names of all models found in every source, sorted case-insensitively.

    Module files whose class cannot be resolved are listed by their module name.
    """
    names: Dict[str, str] = {low: entry[0] for low, entry in _REGISTRY.items()}
    for ep in _entry_points():
        names.setdefault(ep.name.lower(), ep.name)
    folders = [_checkout_models_dir()] + _packaged_models_dirs() + [_cwd_models_dir()]
    for folder in folders:
        for mod in _module_names(folder):
            if mod.lower() in names:
                continue
            try:
                hit = _lookup(mod)
            except Exception as exc:  # a broken model file must not hide the others
                logger.warning("model module %s/%s.py could not be imported: %s", folder, mod, exc)
                hit = None
            names[mod.lower()] = hit[0] if hit else mod
    return sorted(names.values(), key=str.lower)
