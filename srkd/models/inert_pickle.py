"""Read a torch checkpoint whose pickle names objects that `weights_only` refuses, running none of them.

Training checkpoints often hold more than weights: e.g. torch < 2.4 pickled OneCycleLR's
`anneal_func` as a bound method (`builtins.getattr` on a pickled scheduler object), which
`torch.load(weights_only=True)` refuses, so the whole file is refused although only its
`state_dict` is needed. `load_inert` reads such a file with a restricted unpickler instead:

- a global on torch's weights-only allow-list (tensor rebuild functions, dtypes, OrderedDict, ...)
  or a numpy scalar constructor is used as is;
- any other global (a class, a function, `getattr`, `os.system`, ...) is replaced by a fresh
  subclass of `Inert`, which only records the arguments and state it is given: nothing named in
  the file is imported or called;
- BUILD (set an object's state) is allowed only on `Inert` objects, dicts, tensors and numpy
  dtypes (how numpy pickles a dtype).

Tensors are restored by torch's own loader (`persistent_load`), so they are exactly those saved.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch


class Inert:
    """Stands for an object the checkpoint names but srkd does not trust: it keeps the
    constructor arguments and state the pickle gives it, and calling it returns another Inert."""

    srkd_global = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        return Inert(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<inert {self.srkd_global}>"


def _allowed_globals() -> dict[str, Any]:
    """'module.name' -> object for every global the loader may use for real."""
    from torch import _weights_only_unpickler as wou

    allowed = dict(wou._get_allowed_globals())
    core = getattr(np, "_core", None) or np.core
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[f"{module}.scalar"] = core.multiarray.scalar
        allowed[f"{module}._reconstruct"] = core.multiarray._reconstruct
    for container in (dict, list, tuple, set, frozenset):  # plain constructors, nothing else
        allowed[f"builtins.{container.__name__}"] = container
    allowed["numpy.dtype"] = np.dtype
    allowed["numpy.ndarray"] = np.ndarray
    for t in (np.float64, np.float32, np.int64, np.int32, np.bool_):
        allowed[f"numpy.dtypes.{type(np.dtype(t)).__name__}"] = type(np.dtype(t))
    return allowed


class _InertUnpickler(pickle._Unpickler):  # the Python implementation: its opcodes can be overridden
    allowed: dict[str, Any] = {}
    replaced: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names (torch saves with protocol 2)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f"{module}.{name}"
        if key in self.allowed:
            return self.allowed[key]
        self.replaced.add(key)
        return type(name, (Inert,), {"srkd_global": key})

    def load_build(self) -> None:
        target = self.stack[-2]
        if not isinstance(target, (Inert, dict, torch.Tensor, np.dtype)):
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(target).__name__}")
        super().load_build()

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def load_inert(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Any, list[str]]:
    """torch.load `path` with nothing in it executed (see the module docstring).

    Returns (the loaded object, with Inert stand-ins for every untrusted global; the sorted
    'module.name' of each global that was replaced). Raises what torch.load raises for a file
    that is not a torch checkpoint, and pickle.UnpicklingError for a forbidden BUILD.
    """
    replaced: set[str] = set()
    unpickler = type("Unpickler", (_InertUnpickler,), {"allowed": _allowed_globals(), "replaced": replaced})
    module = types.SimpleNamespace(Unpickler=unpickler, __name__="srkd_inert_pickle")
    obj = torch.load(Path(path), map_location=map_location, weights_only=False, pickle_module=module)
    return obj, sorted(replaced)
