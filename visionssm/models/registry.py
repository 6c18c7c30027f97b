"""One registry for every visionssm model: ``create(name, **kwargs)``, ``list_models(task=...)`` and YAML presets.

A model class (or factory function) registers itself with :func:`register` under a name and a task. Presets live
in ``configs/models/*.yaml`` in the LightningCLI layout::

    class_path: visionssm.models.VMUNet
    init_args:
      spatial_dims: 2
      in_channels: 3
      out_channels: 9

:func:`load_config` builds the model of such a file. Only registered classes can be named by ``class_path``, so a
config file can never make visionssm import or call arbitrary code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from torch import nn

from visionssm.errors import InputError

TASKS = ("backbone", "segmentation", "change_detection", "classification", "pretraining")

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, task and the class or function that builds it."""

    name: str
    task: str
    builder: Callable[..., nn.Module]

    @property
    def class_path(self) -> str:
        return f"{self.builder.__module__}.{self.builder.__qualname__}"


_ENTRIES: dict[str, ModelEntry] = {}


def register(name: str, task: str) -> Callable[[Builder], Builder]:
    """Class/function decorator: make ``builder`` available as ``create(name)`` for ``task``."""
    if task not in TASKS:
        raise ValueError(f"register({name!r}): task {task!r} is not one of {TASKS}")

    def decorate(builder: Builder) -> Builder:
        if name in _ENTRIES and _ENTRIES[name].builder is not builder:
            raise ValueError(f"model name {name!r} is already registered by {_ENTRIES[name].class_path}")
        _ENTRIES[name] = ModelEntry(name, task, builder)
        return builder

    return decorate


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted; only those of ``task`` when given."""
    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}; tasks: {TASKS}")
    return sorted(name for name, entry in _ENTRIES.items() if task is None or entry.task == task)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with constructor arguments ``kwargs``."""
    entry = _ENTRIES.get(name)
    if entry is None:
        raise InputError(f"unknown model {name!r}; registered models: {list_models()}")
    return entry.builder(**kwargs)


def _entry_for_class_path(class_path: str, source: str) -> ModelEntry:
    """The entry whose builder ``class_path`` names, also through re-exports such as ``visionssm.models.VMamba``."""
    module_name, _, attribute = class_path.rpartition(".")
    target = None
    if module_name == "visionssm" or module_name.startswith("visionssm."):
        try:
            target = getattr(importlib.import_module(module_name), attribute, None)
        except ImportError:
            target = None
    for entry in _ENTRIES.values():
        if entry.builder is target:
            return entry
    known = sorted({entry.class_path for entry in _ENTRIES.values()})
    raise InputError(f"{source}: class_path {class_path!r} is not a registered visionssm model; known: {known}")


def build_from_config(config: dict[str, Any], source: str = "config") -> nn.Module:
    """Build a model from a ``{"class_path": ..., "init_args": {...}}`` mapping (``source`` names it in errors)."""
    if not isinstance(config, dict) or "class_path" not in config:
        raise InputError(f"{source}: expected a mapping with 'class_path' and optional 'init_args'")
    unknown = sorted(set(config) - {"class_path", "init_args"})
    if unknown:
        raise InputError(f"{source}: unknown key(s) {unknown}; expected 'class_path' and 'init_args'")
    init_args = config.get("init_args") or {}
    if not isinstance(init_args, dict):
        raise InputError(f"{source}: init_args must be a mapping, got {type(init_args).__name__}")
    entry = _entry_for_class_path(str(config["class_path"]), source)
    try:
        return entry.builder(**init_args)
    except TypeError as err:
        raise InputError(f"{source}: {entry.class_path} does not accept these init_args ({err})") from err


def load_config(path: str | Path) -> nn.Module:
    """Build the model described by a YAML preset file (``class_path`` + ``init_args``)."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputError(f"{path}: cannot read the model config ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML ({err})") from err
    return build_from_config(config, source=str(path))
