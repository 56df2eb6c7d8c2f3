"""Package list for setuptools; everything else is in ``pyproject.toml``.

``annotator`` and ``segcore`` are found as usual; the top-level ``resources/`` folder is added as
the data package ``annotator.resources`` (with its data folders; no ``__init__.py``, never imported:
read through ``annotator.resources()``), which ``pyproject.toml`` maps to that folder with
``[tool.setuptools.package-dir]``. ``[tool.setuptools.packages.find]`` cannot express that: it only
finds packages under their own names' folders.
"""

from setuptools import find_namespace_packages, find_packages, setup

setup(packages=find_packages(include=["annotator*", "segcore*"])
      + ["annotator.resources"] + [f"annotator.resources.{p}" for p in find_namespace_packages(where="resources")])
