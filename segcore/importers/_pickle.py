"""Safe reader of detectron2 ``.pkl`` weight files (MSRA ResNet backbones ``R-50.pkl``,
``R-101.pkl``, and ``{"model": {name: ndarray}, "__author__": ...}`` model pickles).

A restricted :class:`pickle.Unpickler` whose ``find_class`` allows only what numpy needs to
rebuild arrays (``numpy.core.multiarray._reconstruct`` / ``numpy._core...``, ``numpy.ndarray``,
``numpy.dtype``, ``scalar``) and ``collections.OrderedDict``; any other global (``os.system``,
``builtins.eval``, arbitrary classes) raises, so loading never executes foreign code. The file
is read with ``encoding="latin1"`` (Python 2 pickles of the Caffe2 era).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

__all__ = ["load_numpy_pickle", "ALLOWED_GLOBALS"]

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights file")
        if module == "collections":
            import collections

            return collections.OrderedDict
        if name == "ndarray":
            return np.ndarray
        if name == "dtype":
            return np.dtype
        core = getattr(np, "_core", None)
        if core is None:  # numpy < 2
            core = np.core
        if name == "_reconstruct":
            return core.multiarray._reconstruct
        if name == "scalar":
            return core.multiarray.scalar
        return core.numeric._frombuffer


def load_numpy_pickle(path: str | Path) -> dict:
    """Read a detectron2 ``.pkl`` and return ``{name: np.ndarray}`` (the ``"model"`` / ``"blobs"``
    entry when the pickle wraps one; non-array entries such as ``__author__`` are dropped).

    Raises:
        segcore.importers.WeightImportError: unreadable file, a disallowed global, or no arrays.
    """
    from . import WeightImportError

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, OSError) as exc:
        raise WeightImportError(f"{path}: not a numpy-only weights pickle ({exc})") from None
    if isinstance(obj, dict):
        for key in ("model", "blobs"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise WeightImportError(f"{path}: no dict of arrays in the pickle")
    arrays = {str(k): np.asarray(v) for k, v in obj.items() if isinstance(v, (np.ndarray, np.generic))}
    if not arrays:
        raise WeightImportError(f"{path}: no arrays in the pickle")
    return arrays
