"""Pure-Python logic behind the desktop UI (no Qt): colours, mask overlays, hit-testing, review.

Tests drive these modules without a display; :mod:`annotator.ui` only wires them to widgets.
"""
