"""segcore models. Importing this package registers every built-in family and architecture.

``FAMILY_PACKAGES`` is the registry's family list: the one place outside a family's own package
that names it. A new family is a package ``segcore/modeling/<name>/`` that calls
``registry.register(...)`` for its builders and ``registry.register_family(Family(...))`` once,
plus its entry here; nothing else in segcore or the annotator changes
(``tests/test_family_contract.py`` checks it).
"""

import importlib

from .registry import (ARCHITECTURES, FAMILIES, Family, ModelInfo, build_model, family_of, family_of_arch,
                       list_architectures, register, register_family)

#: The family packages, imported in this order (each registers its Family and builders).
FAMILY_PACKAGES = ("yolact", "blendmask", "centermask")

#: The architecture offered when nothing else is known (a new project in the app) on a GPU.
DEFAULT_ARCHITECTURE = "yolact_r50_550"

#: The architecture a project without a model version trains on a CPU: the one that learned a
#: narrow domain from scratch fastest per CPU-minute (README "The loop", measured on nuclei-he).
CPU_DEFAULT_ARCHITECTURE = "centermask_tiny"

for _name in FAMILY_PACKAGES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["ARCHITECTURES", "FAMILIES", "FAMILY_PACKAGES", "DEFAULT_ARCHITECTURE", "CPU_DEFAULT_ARCHITECTURE",
           "Family", "ModelInfo",
           "build_model", "family_of", "family_of_arch", "list_architectures", "register", "register_family"]
