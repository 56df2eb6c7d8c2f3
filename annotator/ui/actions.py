"""The window's actions as data: menu, text, shortcuts, toolbar placement, slot name.

Every action gets its shortcuts in its tooltip (``"Accept (A)"``) and is reachable from the
menu bar; those marked ``toolbar`` also get a toolbar button. ``slot`` names a
:class:`~annotator.ui.main_window.MainWindow` method (dotted: of one of its attributes) called
without arguments, or ``"method:arg"`` called with one string argument (the tools, the import /
export formats). Digit keys 1-9 (``class_1``..``class_9``) pick the n-th project category.
``menu`` may name a submenu as ``"&File/&Export"``; ``tip`` replaces ``text`` in the tooltip
(e.g. ``"Export COCO"`` for the submenu entry ``"COCO..."``). The Help menu comes last.
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
    tip: str = ""


IMPORT_MENU = "&File/&Import annotations"
EXPORT_MENU = "&File/E&xport"

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "Open folder/project...", "open_folder_dialog", ("Ctrl+O",), "&File", True),
    ActionSpec("choose_model", "Choose model...", "choose_model_dialog", ("Ctrl+M",), "&File", True),
    # File > Import annotations / Export: the CLI's formats (annotator.ui.formats)
    ActionSpec("import_coco", "COCO...", "import_annotations_dialog:coco", (), IMPORT_MENU,
               tip="Import COCO annotations"),
    ActionSpec("import_yolo", "YOLO-seg...", "import_annotations_dialog:yolo", (), IMPORT_MENU,
               tip="Import YOLO-seg annotations"),
    ActionSpec("import_labelme", "labelme...", "import_annotations_dialog:labelme", (), IMPORT_MENU,
               tip="Import labelme annotations"),
    ActionSpec("import_via", "VIA...", "import_annotations_dialog:via", (), IMPORT_MENU,
               tip="Import VIA annotations"),
    ActionSpec("import_masks", "mask PNGs...", "import_annotations_dialog:masks", (), IMPORT_MENU,
               tip="Import mask PNGs"),
    ActionSpec("export", "COCO...", "export_coco_dialog", ("Ctrl+E",), EXPORT_MENU, True, tip="Export COCO"),
    ActionSpec("export_yolo", "YOLO-seg...", "export_annotations_dialog:yolo", (), EXPORT_MENU, tip="Export YOLO-seg"),
    ActionSpec("export_labelme", "labelme...", "export_annotations_dialog:labelme", (), EXPORT_MENU,
               tip="Export labelme"),
    ActionSpec("export_via", "VIA...", "export_annotations_dialog:via", (), EXPORT_MENU, tip="Export VIA"),
    ActionSpec("export_masks", "mask PNGs...", "export_annotations_dialog:masks", (), EXPORT_MENU,
               tip="Export mask PNGs"),
    ActionSpec("quit", "Quit", "close", ("Ctrl+Q",), "&File"),
    ActionSpec("accept", "Accept", "accept_selected", ("A",), "&Review", True),
    ActionSpec("reject", "Reject", "reject_selected", ("R",), "&Review", True),
    ActionSpec("delete", "Delete", "delete_selected", ("Del", "Backspace"), "&Review", True),
    ActionSpec("accept_all", "Accept all predictions above the score threshold", "accept_all_predicted",
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
    ActionSpec("cancel", "Cancel drawing / pre-label, or clear the selection", "cancel", ("Esc",), "&Model", True),
    ActionSpec("train", "Train...", "open_training", ("Ctrl+T",), "&Model", True),
    # editing
    ActionSpec("undo", "Undo", "undo", ("Ctrl+Z",), "&Edit", True),
    ActionSpec("redo", "Redo", "redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "&Edit", True),
    ActionSpec("tool_select", "Select tool", "set_tool:select", ("V",), "&Tools", True, True),
    ActionSpec("tool_polygon", "Polygon: click vertices, Enter / double-click / right-click closes; "
               "Shift = cut from selected (hole), Ctrl = add to selected", "set_tool:polygon", ("P",),
               "&Tools", True, True),
    ActionSpec("tool_brush", "Brush: paint the selected instance (new instance if none)", "set_tool:brush",
               ("B",), "&Tools", True, True),
    ActionSpec("tool_eraser", "Eraser: erase from the selected instance", "set_tool:eraser", ("E",),
               "&Tools", True, True),
    ActionSpec("tool_box", "Box to mask (model, or GrabCut)", "set_tool:box", ("X",), "&Tools", True, True),
    ActionSpec("tool_wand", "Magic wand (Shift = add to selected)", "set_tool:wand", ("W",), "&Tools",
               True, True),
    ActionSpec("tool_refine", "GrabCut refine: left strokes include, right / Alt strokes exclude, Enter applies",
               "set_tool:refine", ("G",), "&Tools", True, True),
    ActionSpec("tool_vertex", "Edit vertices: drag, click an edge to insert, Shift-click to delete",
               "set_tool:vertex", ("N",), "&Tools", True, True),
    ActionSpec("finish", "Finish polygon / apply refine", "finish_gesture", ("Return", "Enter"), "&Tools"),
    ActionSpec("brush_larger", "Larger brush", "brush_larger", (".",), "&Tools"),
    ActionSpec("brush_smaller", "Smaller brush", "brush_smaller", (",",), "&Tools"),
    ActionSpec("merge", "Merge previously selected into selected", "merge_instances", ("M",), "&Edit", True),
    ActionSpec("subtract", "Subtract previously selected from selected", "subtract_instances", ("Shift+M",),
               "&Edit", True),
    ActionSpec("split", "Split parts into instances", "split_instance", ("Y",), "&Edit", True),
    ActionSpec("fill_holes", "Fill holes", "fill_instance_holes", ("O",), "&Edit", True),
    ActionSpec("front", "Bring to front", "bring_to_front", ("Ctrl+]",), "&Edit"),
    ActionSpec("back", "Send to back", "send_to_back", ("Ctrl+[",), "&Edit"),
    ActionSpec("classes", "Class manager...", "class_manager_dialog", ("Ctrl+K",), "&Edit"),
    # review workflow
    ActionSpec("done_reject", "Done: reject remaining predictions", "mark_done_reject_rest", ("Ctrl+D",),
               "&Review", True),
    ActionSpec("done_accept", "Done: accept remaining predictions", "mark_done_accept_rest",
               ("Ctrl+Shift+D",), "&Review"),
    ActionSpec("next_unreviewed", "Next unreviewed image", "next_unreviewed_image", ("U",), "&View", True),
    ActionSpec("about", "About annotator...", "show_about", (), "&Help"),
)


def tooltip(text: str, keys: tuple[str, ...]) -> str:
    """``"Accept (A)"``; several shortcuts are joined with ``" / "``."""
    shown = " / ".join(QKeySequence(k).toString(QKeySequence.NativeText) for k in keys)
    return f"{text.rstrip('.')} ({shown})" if shown else text.rstrip(".")


def make_action(window, name: str, text: str, callback, keys=(), *, checkable=False, tip: str = "") -> QAction:
    """A window-wide ``QAction`` with its shortcuts and tooltip (``tip`` or ``text`` plus the keys)."""
    act = QAction(text, window)
    act.setObjectName(name)
    act.setShortcuts([QKeySequence(k) for k in keys])
    act.setToolTip(tooltip(tip or text, tuple(keys)))
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
        name, _, arg = spec.slot.partition(":")
        slot = functools.reduce(getattr, name.split("."), window)
        if arg:
            slot = functools.partial(slot, arg)
        act = make_action(window, spec.name, spec.text, slot, spec.keys,
                          checkable=spec.checkable, tip=spec.tip)
        acts[spec.name] = act
        _menu(window, menus, spec.menu).addAction(act)
        if spec.toolbar:
            top_menu = spec.menu.split("/")[0]   # a submenu groups with its menu
            if last_menu is not None and top_menu != last_menu:
                toolbar.addSeparator()
            toolbar.addAction(act)
            last_menu = top_menu
            if spec.name == "delete" and extra_toolbar_widget is not None:
                toolbar.addWidget(extra_toolbar_widget)
            if spec.name == "tool_vertex":
                for widget in getattr(window, "tool_widgets", lambda: [])():
                    toolbar.addWidget(widget)
    for i in range(1, 10):
        acts[f"class_{i}"] = make_action(window, f"class_{i}", f"Class {i}",
                                         functools.partial(window.set_category_by_key, i), (str(i),))
    window.class_menu = window.menuBar().addMenu("&Class")
    if "&Help" in menus:  # Help last, after the class menu
        window.menuBar().removeAction(menus["&Help"].menuAction())
        window.menuBar().addAction(menus["&Help"].menuAction())
    return acts


def _menu(window, menus: dict, path: str):
    """The menu at ``path`` (``"&File"`` or ``"&File/&Export"``), created on first use in order."""
    if path not in menus:
        parent, _, leaf = path.rpartition("/")
        menus[path] = _menu(window, menus, parent).addMenu(leaf) if parent else window.menuBar().addMenu(leaf)
    return menus[path]
