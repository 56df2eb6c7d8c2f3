"""The PySide6 desktop shell. The only package that imports Qt.

Entry point: :func:`annotator.ui.app.main`. Widgets are thin: they receive their model in the
constructor, emit signals and delegate logic to :mod:`annotator.tools`.
"""
