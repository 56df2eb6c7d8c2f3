"""The window's actions as data: menu, text, shortcuts, toolbar placement, slot name.

Every action gets its shortcuts in its tooltip (``"Accept (A)"``) and is reachable from the
menu bar; those marked ``toolbar`` also get a button on the main tool bar (top), those marked
``palette`` one on the tool palette (a vertical tool bar on the left, icons with short names,
as image editors and labelme / CVAT have them); ``short`` is the button's text (the long
``text`` and the shortcut are in its tooltip). The drawing tools form one exclusive group, so
the active tool is checked. ``slot`` names a
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
    short: str = ""
    palette: bool = False


IMPORT_MENU = "&File/&Import annotations"
EXPORT_MENU = "&File/E&xport"

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "Open folder/project...", "open_folder_dialog", ("Ctrl+O",), "&File", True, short="Open"),
    ActionSpec("choose_model", "Choose model...", "choose_model_dialog", ("Ctrl+M",), "&File", True, short="Model"),
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
    ActionSpec("export", "COCO...", "export_coco_dialog", ("Ctrl+E",), EXPORT_MENU, True, tip="Export COCO",
               short="Export"),
    ActionSpec("export_yolo", "YOLO-seg...", "export_annotations_dialog:yolo", (), EXPORT_MENU, tip="Export YOLO-seg"),
    ActionSpec("export_labelme", "labelme...", "export_annotations_dialog:labelme", (), EXPORT_MENU,
               tip="Export labelme"),
    ActionSpec("export_via", "VIA...", "export_annotations_dialog:via", (), EXPORT_MENU, tip="Export VIA"),
    ActionSpec("export_masks", "mask PNGs...", "export_annotations_dialog:masks", (), EXPORT_MENU,
               tip="Export mask PNGs"),
    ActionSpec("quit", "Quit", "close", ("Ctrl+Q",), "&File"),
    # editing
    ActionSpec("undo", "Undo", "undo", ("Ctrl+Z",), "&Edit", True, short="Undo"),
    ActionSpec("redo", "Redo", "redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "&Edit", True, short="Redo"),
    # review workflow
    ActionSpec("accept", "Accept", "accept_selected", ("A",), "&Review", True, short="Accept"),
    ActionSpec("reject", "Reject", "reject_selected", ("R",), "&Review", True, short="Reject"),
    ActionSpec("delete", "Delete", "delete_selected", ("Del", "Backspace"), "&Review", True, short="Delete"),
    ActionSpec("accept_all", "Accept all predictions above the score threshold", "accept_all_predicted",
               ("Shift+A",), "&Review"),
    ActionSpec("next_instance", "Next instance", "next_instance", ("]",), "&Review"),
    ActionSpec("prev_instance", "Previous instance", "previous_instance", ("[",), "&Review"),
    ActionSpec("done_reject", "Done: reject remaining predictions, go to the next unreviewed image",
               "mark_done_reject_rest", ("Ctrl+D",), "&Review", True, short="Done"),
    ActionSpec("done_accept", "Done: accept remaining predictions, go to the next unreviewed image",
               "mark_done_accept_rest", ("Ctrl+Shift+D",), "&Review"),
    ActionSpec("prev_image", "Previous image", "previous_image", ("PgUp", "Shift+D"), "&View", True, short="Prev"),
    ActionSpec("next_image", "Next image", "next_image", ("PgDown", "D"), "&View", True, short="Next"),
    ActionSpec("next_unreviewed", "Next unreviewed image", "next_unreviewed_image", ("U",), "&View", True,
               short="Unreviewed"),
    ActionSpec("zoom_in", "Zoom in", "canvas.zoom_in", ("+", "="), "&View"),
    ActionSpec("zoom_out", "Zoom out", "canvas.zoom_out", ("-",), "&View"),
    ActionSpec("fit", "Fit image", "canvas.fit", ("F",), "&View", True, short="Fit"),
    ActionSpec("show_rejected", "Show rejected", "toggle_rejected", ("H",), "&View", checkable=True),
    ActionSpec("prelabel", "Pre-label this image", "prelabel_current", ("Ctrl+L",), "&Model", True,
               short="Pre-label"),
    ActionSpec("prelabel_all", "Pre-label all unreviewed", "prelabel_unreviewed", ("Ctrl+Shift+L",),
               "&Model", True, short="Pre-label all"),
    ActionSpec("cancel", "Cancel drawing / pre-label, or clear the selection", "cancel", ("Esc",), "&Model"),
    ActionSpec("train", "Train...", "open_training", ("Ctrl+T",), "&Model", True, short="Train"),
    # the tool palette: drawing tools (exclusive), then the mask operations
    ActionSpec("tool_select", "Select: click an instance", "set_tool:select", ("V",), "&Tools", checkable=True,
               short="Select", palette=True),
    ActionSpec("tool_polygon", "Polygon: click vertices, Enter / double-click / right-click closes; "
               "Shift = cut from selected (hole), Ctrl = add to selected", "set_tool:polygon", ("P",),
               "&Tools", checkable=True, short="Polygon", palette=True),
    ActionSpec("tool_brush", "Brush: paint the selected instance (new instance if none)", "set_tool:brush",
               ("B",), "&Tools", checkable=True, short="Brush", palette=True),
    ActionSpec("tool_eraser", "Eraser: erase from the selected instance", "set_tool:eraser", ("E",),
               "&Tools", checkable=True, short="Eraser", palette=True),
    ActionSpec("tool_box", "Box to mask: drag a box around one object (engine: model or GrabCut)",
               "set_tool:box", ("X",), "&Tools", checkable=True, short="Box", palette=True),
    ActionSpec("tool_wand", "Magic wand: click a region of similar colour (Shift = add to selected)",
               "set_tool:wand", ("W",), "&Tools", checkable=True, short="Wand", palette=True),
    ActionSpec("tool_refine", "GrabCut refine: left strokes include, right / Alt strokes exclude, Enter applies",
               "set_tool:refine", ("G",), "&Tools", checkable=True, short="Refine", palette=True),
    ActionSpec("tool_vertex", "Edit vertices: drag, click an edge to insert, Shift-click to delete",
               "set_tool:vertex", ("N",), "&Tools", checkable=True, short="Vertices", palette=True),
    ActionSpec("finish", "Finish polygon / apply refine", "finish_gesture", ("Return", "Enter"), "&Tools"),
    ActionSpec("brush_larger", "Larger brush", "brush_larger", (".",), "&Tools"),
    ActionSpec("brush_smaller", "Smaller brush", "brush_smaller", (",",), "&Tools"),
    ActionSpec("merge", "Merge previously selected into selected", "merge_instances", ("M",), "&Edit",
               short="Merge", palette=True),
    ActionSpec("subtract", "Subtract previously selected from selected", "subtract_instances", ("Shift+M",),
               "&Edit", short="Subtract", palette=True),
    ActionSpec("split", "Split parts into instances", "split_instance", ("Y",), "&Edit", short="Split",
               palette=True),
    ActionSpec("fill_holes", "Fill holes", "fill_instance_holes", ("O",), "&Edit", short="Fill holes",
               palette=True),
    ActionSpec("front", "Bring to front", "bring_to_front", ("Ctrl+]",), "&Edit"),
    ActionSpec("back", "Send to back", "send_to_back", ("Ctrl+[",), "&Edit"),
    ActionSpec("classes", "Class manager...", "class_manager_dialog", ("Ctrl+K",), "&Edit"),
    ActionSpec("add_class", "Add class...", "add_class_dialog", ("Ctrl+Shift+K",), "&Edit"),
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


def build_actions(window, extra_toolbar_widgets=()) -> dict:
    """Create all actions (plus ``class_1``..``class_9`` for digit keys), the menus, the main
    tool bar and the tool palette on ``window``. ``extra_toolbar_widgets`` (e.g. the labelled
    class picker) follow the Delete button; ``window.tool_widgets()`` (brush radius, wand
    tolerance) end the palette. Returns ``{name: QAction}``; the class menu is ``window.class_menu``.
    """
    from PySide6.QtCore import QSize, Qt
    from PySide6.QtGui import QActionGroup
    from PySide6.QtWidgets import QToolBar

    from annotator.ui.icons import tool_icon

    acts: dict[str, QAction] = {}
    menus: dict[str, object] = {}
    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("main_toolbar")
    palette = QToolBar("Tools", window)
    palette.setObjectName("tool_palette")
    palette.setOrientation(Qt.Vertical)
    palette.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
    palette.setIconSize(QSize(28, 28))
    window.addToolBar(Qt.LeftToolBarArea, palette)
    tools = QActionGroup(window)
    tools.setExclusive(True)
    last_menu = last_group = None
    for spec in ACTIONS:
        name, _, arg = spec.slot.partition(":")
        slot = functools.reduce(getattr, name.split("."), window)
        if arg:
            slot = functools.partial(slot, arg)
        act = make_action(window, spec.name, spec.text, slot, spec.keys,
                          checkable=spec.checkable, tip=spec.tip)
        if spec.short:
            act.setIconText(spec.short)  # button text; menus keep the long text
        acts[spec.name] = act
        _menu(window, menus, spec.menu).addAction(act)
        if spec.toolbar:
            top_menu = spec.menu.split("/")[0]   # a submenu groups with its menu
            if last_menu is not None and top_menu != last_menu:
                toolbar.addSeparator()
            toolbar.addAction(act)
            last_menu = top_menu
            if spec.name == "delete":
                for widget in extra_toolbar_widgets:
                    toolbar.addWidget(widget)
        if spec.palette:
            group = spec.menu
            if last_group is not None and group != last_group:
                for widget in getattr(window, "tool_widgets", lambda: [])():
                    palette.addWidget(widget)
                palette.addSeparator()
            if spec.name.startswith("tool_"):
                act.setIcon(tool_icon(spec.name[len("tool_"):]))
                tools.addAction(act)
            palette.addAction(act)
            last_group = group
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
