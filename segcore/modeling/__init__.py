"""segcore models. Importing this package registers every built-in architecture."""

from . import yolact  # noqa: F401  (registers the YOLACT builders)
from . import blendmask  # noqa: F401  (registers the BlendMask builders)
from . import centermask  # noqa: F401  (registers the CenterMask builders)
from .registry import ARCHITECTURES, build_model, list_architectures, register

__all__ = ["ARCHITECTURES", "build_model", "list_architectures", "register"]
