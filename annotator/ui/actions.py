"""The window's actions as data: menu, text, shortcuts, toolbar placement, slot name.

Every action gets its shortcuts in its tooltip (``"Accept (A)"``) and is reachable from the
menu bar; those marked ``toolbar`` also get a toolbar button. ``slot`` names a
:class:`~annotator.ui.main_window.MainWindow` method (dotted: of one of its attributes) called
without arguments. Digit keys 1-9 (``class_1``..``class_9``) pick the n-th project category.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from PySide6.QtGui import QAction, QKeySequence


class ActionSpec(NamedTuple):
    name: str
    text: str
    slot: str
    keys: tuple[str, ...] = ()
    menu: str = "&File"
    toolbar: bool = False
    checkable: bool = False


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "Open folder/project...", "open_folder_dialog", ("Ctrl+O",), "&File", True),
    ActionSpec("choose_model", "Choose model...", "choose_model_dialog", ("Ctrl+M",), "&File", True),
    ActionSpec("export", "Export COCO...", "export_coco_dialog", ("Ctrl+E",), "&File", True),
    ActionSpec("quit", "Quit", "close", ("Ctrl+Q",), "&File"),
    ActionSpec("accept", "Accept", "accept_selected", ("A",), "&Review", True),
    ActionSpec("reject", "Reject", "reject_selected", ("R",), "&Review", True),
    ActionSpec("delete", "Delete", "delete_selected", ("Del", "Backspace"), "&Review", True),
    ActionSpec("accept_all", "Accept all predictions on this image", "accept_all_predicted",
               ("Shift+A",), "&Review"),
    ActionSpec("next_instance", "Next instance", "next_instance", ("]",), "&Review"),
    ActionSpec("prev_instance", "Previous instance", "previous_instance", ("[",), "&Review"),
    ActionSpec("prev_image", "Previous image", "previous_image", ("PgUp", "Shift+D"), "&View", True),
    ActionSpec("next_image", "Next image", "next_image", ("PgDown", "D"), "&View", True),
    ActionSpec("zoom_in", "Zoom in", "canvas.zoom_in", ("+", "="), "&View"),
    ActionSpec("zoom_out", "Zoom out", "canvas.zoom_out", ("-",), "&View"),
    ActionSpec("fit", "Fit image", "canvas.fit", ("F",), "&View", True),
    ActionSpec("show_rejected", "Show rejected", "toggle_rejected", ("H",), "&View", checkable=True),
    ActionSpec("prelabel", "Pre-label this image", "prelabel_current", ("Ctrl+L",), "&Model", True),
    ActionSpec("prelabel_all", "Pre-label all unreviewed", "prelabel_unreviewed", ("Ctrl+Shift+L",),
               "&Model", True),
    ActionSpec("cancel", "Cancel", "cancel_prelabel", ("Esc",), "&Model", True),
)


def tooltip(text: str, keys: tuple[str, ...]) -> str:
    """``"Accept (A)"``; several shortcuts are joined with ``" / "``."""
    shown = " / ".join(QKeySequence(k).toString(QKeySequence.NativeText) for k in keys)
    return f"{text.rstrip('.')} ({shown})" if shown else text.rstrip(".")


def make_action(window, name: str, text: str, callback, keys=(), *, checkable=False) -> QAction:
    act = QAction(text, window)
    act.setShortcuts([QKeySequence(k) for k in keys])
    act.setToolTip(tooltip(text, tuple(keys)))
    act.setCheckable(checkable)
    act.triggered.connect(lambda checked=False: callback())
    window.addAction(act)
    return act


def build_actions(window, extra_toolbar_widget=None) -> dict:
    """Create all actions (plus ``class_1``..``class_9`` for digit keys), the menus and the
    toolbar on ``window``. Returns ``{name: QAction}``; the class menu is ``window.class_menu``."""
    acts: dict[str, QAction] = {}
    menus: dict[str, object] = {}
    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    last_menu = None
    for spec in ACTIONS:
        slot = functools.reduce(getattr, spec.slot.split("."), window)
        act = make_action(window, spec.name, spec.text, slot, spec.keys,
                          checkable=spec.checkable)
        acts[spec.name] = act
        if spec.menu not in menus:
            menus[spec.menu] = window.menuBar().addMenu(spec.menu)
        menus[spec.menu].addAction(act)
        if spec.toolbar:
            if last_menu is not None and spec.menu != last_menu:
                toolbar.addSeparator()
            toolbar.addAction(act)
            last_menu = spec.menu
            if spec.name == "delete" and extra_toolbar_widget is not None:
                toolbar.addWidget(extra_toolbar_widget)
    for i in range(1, 10):
        acts[f"class_{i}"] = make_action(window, f"class_{i}", f"Class {i}",
                                         functools.partial(window.set_category_by_key, i), (str(i),))
    window.class_menu = window.menuBar().addMenu("&Class")
    return acts
