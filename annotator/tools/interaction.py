"""Canvas tools as pure state machines (no Qt): mouse / key input in image pixels -> an
:class:`Edit`, and :func:`command_for` turning an edit into a store command.

Tools (:data:`TOOLS`): ``select``, ``polygon``, ``brush``, ``eraser``, ``box`` (box-to-mask: the
active model's mask head for BlendMask / CenterMask, else OpenCV GrabCut; :func:`box_mask_job`),
``wand`` (magic wand), ``refine`` (GrabCut with include / exclude strokes), ``vertex`` (drag /
insert / delete vertices of a polygon-sourced instance).

Modifiers are strings ``"shift"``, ``"ctrl"``, ``"alt"``; buttons ``"left"`` / ``"right"``.
Keys: ``"enter"`` finishes (polygon, refine), ``"escape"`` cancels, ``"backspace"`` removes the
last polygon vertex. The canvas draws :meth:`Tool.preview`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotator.errors import AnnotatorError, Refusal
from annotator.tools import commands, mask_ops

TOOLS = ("select", "polygon", "brush", "eraser", "box", "wand", "refine", "vertex")

#: Pixels (image) within which a vertex / edge is grabbed by the vertex tool.
GRAB_DISTANCE = 6.0


@dataclass
class Edit:
    """What a tool gesture asks for. ``kind``: select | stroke | polygon | box | wand | refine |
    move_vertex | insert_vertex | delete_vertex; ``points`` image pixels; ``data`` extras."""

    kind: str
    points: list = field(default_factory=list)
    modifiers: frozenset = frozenset()
    data: dict = field(default_factory=dict)


@dataclass
class Preview:
    """What the canvas draws while a gesture is in progress (image pixels)."""

    lines: list = field(default_factory=list)      # (points, closed, rgb)
    circles: list = field(default_factory=list)    # (x, y, r, rgb)
    rect: tuple | None = None                      # (x0, y0, x1, y1)


@dataclass
class Tool:
    """One tool's gesture state. ``radius``: brush / eraser / refine stroke radius (px)."""

    name: str = "select"
    radius: float = 8.0
    points: list = field(default_factory=list)
    strokes: list = field(default_factory=list)        # refine: (points, include: bool)
    dragging: bool = False
    grab: tuple | None = None                           # vertex: (part, index)
    polygon: list | None = None                         # vertex: the polygon being edited
    cursor: tuple | None = None
    _mods: frozenset = frozenset()
    _include: bool = True

    def reset(self) -> None:
        self.points, self.strokes, self.dragging, self.grab = [], [], False, None

    @property
    def busy(self) -> bool:
        """A gesture is in progress (Escape cancels it)."""
        return bool(self.points or self.strokes or self.dragging)

    # ---- input -------------------------------------------------------------------------
    def press(self, x: float, y: float, button: str = "left", modifiers=frozenset()) -> Edit | None:
        mods = frozenset(modifiers)
        self.cursor = (x, y)
        if self.name == "select":
            return Edit("select", [(x, y)], mods) if button == "left" else None
        if self.name == "polygon":
            if button == "right":
                return self.key("enter")
            self._mods = self._mods | mods
            self.points.append((x, y))
            return None
        if self.name in ("brush", "eraser", "refine", "box"):
            self.dragging, self.points, self._mods = True, [(x, y)], mods
            self._include = not (button == "right" or "alt" in mods)
            return None
        if self.name == "wand":
            return Edit("wand", [(x, y)], mods) if button == "left" else None
        if self.name == "vertex" and self.polygon:
            hit = mask_ops.nearest_vertex(self.polygon, x, y)
            if hit is not None and hit[2] <= GRAB_DISTANCE:
                if "alt" in mods or "shift" in mods or button == "right":
                    return Edit("delete_vertex", [], mods, {"part": hit[0], "index": hit[1]})
                self.grab, self.dragging = (hit[0], hit[1]), True
                return None
            edge = mask_ops.nearest_edge(self.polygon, x, y)
            if edge is not None and edge[2] <= GRAB_DISTANCE:
                return Edit("insert_vertex", [(x, y)], mods, {"part": edge[0], "index": edge[1]})
            return Edit("select", [(x, y)], mods)
        if self.name == "vertex":
            return Edit("select", [(x, y)], mods)
        return None

    def move(self, x: float, y: float) -> None:
        self.cursor = (x, y)
        if self.dragging and self.name in ("brush", "eraser", "refine"):
            self.points.append((x, y))
        elif self.dragging and self.name == "box":
            self.points[1:] = [(x, y)]

    def release(self, x: float, y: float, button: str = "left") -> Edit | None:
        if not self.dragging:
            return None
        self.dragging = False
        if self.name in ("brush", "eraser"):
            self.points.append((x, y))
            pts, self.points = self.points, []
            return Edit("stroke", pts, self._mods, {"erase": self.name == "eraser", "radius": self.radius})
        if self.name == "refine":
            self.points.append((x, y))
            self.strokes.append((self.points, self._include))
            self.points = []
            return None
        if self.name == "box":
            (x0, y0), self.points = self.points[0], []
            return Edit("box", [(x0, y0), (x, y)], self._mods) if abs(x - x0) >= 2 and abs(y - y0) >= 2 else None
        if self.name == "vertex" and self.grab is not None:
            part, index = self.grab
            self.grab = None
            return Edit("move_vertex", [(x, y)], self._mods, {"part": part, "index": index})
        return None

    def double_click(self, x: float, y: float) -> Edit | None:
        if self.name == "polygon":
            return self.key("enter")
        return None

    def key(self, key: str) -> Edit | None:
        if key == "escape":
            self.reset()
        elif key == "backspace" and self.name == "polygon" and self.points:
            self.points.pop()
        elif key == "enter" and self.name == "polygon":
            pts, mods = self._dedupe(self.points), self._mods
            self.points, self._mods = [], frozenset()
            return Edit("polygon", pts, mods) if len(pts) >= 3 else None
        elif key == "enter" and self.name == "refine" and self.strokes:
            strokes, self.strokes = self.strokes, []
            return Edit("refine", [], frozenset(), {"strokes": strokes, "radius": self.radius})
        return None

    @staticmethod
    def _dedupe(points: list) -> list:
        out = []
        for p in points:
            if not out or abs(p[0] - out[-1][0]) + abs(p[1] - out[-1][1]) > 0.5:
                out.append(p)
        return out

    # ---- drawing -----------------------------------------------------------------------
    def preview(self) -> Preview:
        pv = Preview()
        if self.name == "polygon" and self.points:
            pts = list(self.points) + ([self.cursor] if self.cursor else [])
            pv.lines.append((pts, False, (255, 255, 0)))
        elif self.name in ("brush", "eraser", "refine"):
            color = (255, 80, 80) if self.name == "eraser" else (80, 255, 80)
            for pts, inc in self.strokes:
                pv.lines.append((pts, False, (80, 255, 80) if inc else (255, 80, 80)))
            if self.points:
                if self.name == "refine" and not self._include:
                    color = (255, 80, 80)
                pv.lines.append((list(self.points), False, color))
            if self.cursor:
                pv.circles.append((self.cursor[0], self.cursor[1], self.radius, color))
        elif self.name == "box" and len(self.points) == 2:
            (x0, y0), (x1, y1) = self.points
            pv.rect = (x0, y0, x1, y1)
        elif self.name == "vertex" and self.polygon:
            for part in self.polygon:
                pts = list(zip(part[0::2], part[1::2]))
                pv.lines.append((pts, True, (255, 255, 0)))
                pv.circles.extend((px, py, 3.0, (255, 255, 0)) for px, py in pts)
        return pv


# ====================================================================== edit -> command
@dataclass
class BoxModel:
    """The model behind box-to-mask.

    Attributes:
        prompter: a ``segcore.prompt.BoxPrompter`` (anything with ``predict(image, boxes,
            category_ids)`` returning ``masks`` ``[N, H, W]`` bool and ``scores`` ``[N]`` or None),
            or a zero-argument callable returning one: a lazy loader, called in the job's
            ``compute`` (off the GUI thread); it may raise.
        version: the model version id (stored as the new instance's provenance), or None.
        category_id: the checkpoint's COCO category id to ask the model for (the current class,
            :func:`model_category_for`), or None to let the model choose.
        name: how messages name the model (``"model v3"``).
    """

    prompter: Any
    version: int | None = None
    category_id: int | None = None
    name: str = "model"


@dataclass
class Context:
    """What :func:`command_for` needs: the image (RGB uint8 [H, W, 3]), the selection, the
    category for new instances, the magic-wand tolerance, and the model for box-to-mask
    (``box_model``; None = GrabCut)."""

    image_id: int
    image: np.ndarray
    category_id: int | None
    selected_id: int | None = None
    selected_polygon: list | None = None
    tolerance: float = 20.0
    box_model: BoxModel | None = None


@dataclass
class Job:
    """Slow work (GrabCut, a model) to run off the GUI thread: ``compute()`` -> a mask
    (``[H, W]`` bool) or a result with a ``mask`` attribute (:class:`BoxMask`), then
    ``finish(result)`` -> the command to execute on the GUI thread."""

    text: str
    compute: Callable[[], Any]
    finish: Callable[[Any], commands.Command]


@dataclass
class BoxMask:
    """What a box-to-mask job computed.

    Attributes:
        mask: ``[H, W]`` bool.
        method: ``"model"`` (the model's mask head) or ``"grabcut"``.
        model_version: the model version id when ``method == "model"``.
        score: the model's mask score in [0, 1] (CenterMask's MaskIoU), or None.
        note: why the model was not used although one was active (its error, or an empty or
            poor model mask), for the user; None when nothing needs saying.
        routine: the note reports a routine fallback (an empty or poor mask: the status bar),
            not a failure of the model (a dialog the first time).
    """

    mask: np.ndarray
    method: str = "grabcut"
    model_version: int | None = None
    score: float | None = None
    note: str | None = None
    routine: bool = False

    @property
    def text(self) -> str:
        """What made the mask, for messages: ``"Box to mask (model v3)"`` / ``"Box to mask (GrabCut)"``."""
        if self.method == "model":
            return "Box to mask (model)" if self.model_version is None else f"Box to mask (model v{self.model_version})"
        return "Box to mask (GrabCut)"


def result_mask(result) -> np.ndarray:
    """The ``[H, W]`` bool mask of a job result (a mask, or a :class:`BoxMask`)."""
    return np.asarray(getattr(result, "mask", result), dtype=bool)


def is_box_model_arch(arch: str) -> bool:
    """Whether a model version's architecture has a mask head that takes a box: its family has
    box-prompt support (:func:`segcore.prompt.supports_box_prompt`); unknown names do not."""
    from segcore.prompt import supports_box_prompt

    return supports_box_prompt(arch)


def model_category_for(name: str | None, checkpoint_categories: Sequence[dict]) -> int | None:
    """The checkpoint category id for a project category name (the same name, as pre-labelling
    maps categories), or None when the model does not know the class (the model then chooses)."""
    if name is None:
        return None
    for c in checkpoint_categories:
        if str(c.get("name")) == str(name):
            return int(c["id"])
    return None


def _not_supported(exc: BaseException) -> bool:
    # segcore.prompt.PromptNotSupported, matched by name: importing segcore (torch) here would
    # slow down the GUI's start for a check that only runs when a model is configured
    return any(t.__name__ == "PromptNotSupported" for t in type(exc).__mro__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


#: A model's box-prompted mask is poor (and GrabCut used instead) when it fills more than
#: ``MAX_BOX_FILL`` of the box (an untrained head returns the box itself as a filled rectangle),
#: less than ``MIN_BOX_FILL``, or when its mask score is below ``MIN_MASK_SCORE``.
MAX_BOX_FILL, MIN_BOX_FILL, MIN_MASK_SCORE = 0.95, 0.05, 0.1


def poor_box_mask(mask: np.ndarray, box: Sequence[float], score: float | None) -> str | None:
    """Why a model's mask for an XYXY ``box`` is not worth keeping (a few words), or None."""
    h, w = mask.shape
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    area = max(1, (x1 - x0) * (y1 - y0))
    fill = float(mask[y0:y1, x0:x1].sum()) / area
    if fill > MAX_BOX_FILL:
        return f"it fills {100 * fill:.0f} % of the box"
    if fill < MIN_BOX_FILL:
        return f"it covers {100 * fill:.1f} % of the box"
    if score is not None and score < MIN_MASK_SCORE:
        return f"mask score {score:.2f}"
    return None


def box_mask_job(ctx: Context, box: Sequence[float], model: BoxModel | None = None) -> Job:
    """The box-to-mask :class:`Job` for an XYXY ``box`` (image pixels) on ``ctx``'s image.

    Decision (made in ``compute``, off the GUI thread):

    - ``model`` given: load it (lazily) and prompt it with the box and ``model.category_id``;
      a non-empty mask -> :class:`BoxMask` ``method="model"`` (with the version and score);
    - the model is a YOLACT family (``PromptNotSupported``) -> GrabCut, nothing to report;
    - the model fails (load or inference error), returns an empty mask, or a poor one
      (:func:`poor_box_mask`: the box itself filled, a speck, a low mask score) -> GrabCut, with
      a ``note`` saying so (the app shows it; it keeps running);
    - no ``model`` -> GrabCut (:func:`~annotator.tools.mask_ops.grabcut_box`).

    ``finish`` adds the instance in the context's category: a model mask as ``source="model"``
    with its model version and score, review state ``edited`` (a model mask a person asked for);
    a GrabCut mask as a human, accepted instance.
    """
    cat = _need_category(ctx)
    image, img_id = ctx.image, ctx.image_id
    x0, y0, x1, y1 = (float(v) for v in box)
    xyxy = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def compute() -> BoxMask:
        note, routine = None, False
        if model is not None:
            try:
                prompter = model.prompter
                if not hasattr(prompter, "predict") and callable(prompter):
                    prompter = prompter()
                res = prompter.predict(image, np.asarray([xyxy], dtype=np.float64),
                                       None if model.category_id is None else [int(model.category_id)])
                mask = np.asarray(res.masks[0], dtype=bool)
                scores = getattr(res, "scores", None)
                score = None if scores is None else min(1.0, max(0.0, float(scores[0])))
                routine = True
                if not mask.any():
                    note = f"Box to mask: {model.name} found no object in the box; used GrabCut instead"
                elif (why := poor_box_mask(mask, xyxy, score)) is not None:
                    note = f"Box to mask: {model.name}'s mask looked poor ({why}); used GrabCut instead"
                else:
                    return BoxMask(mask, "model", model.version, score)
            except Exception as exc:  # noqa: BLE001 - any model failure falls back to GrabCut
                routine = False
                if not _not_supported(exc):
                    note = f"Box to mask: {model.name} failed ({_one_line(exc)}); used GrabCut instead"
        return BoxMask(mask_ops.grabcut_box(image, xyxy), "grabcut", note=note, routine=routine)

    def finish(result) -> commands.Command:
        if isinstance(result, BoxMask) and result.method == "model":
            return commands.add_mask(img_id, cat, result.mask, text="Box to mask (model)", source="model",
                                     model_version=result.model_version, score=result.score,
                                     review_state="edited")
        return commands.add_mask(img_id, cat, result_mask(result), text="Box to mask")

    text = f"Box to mask ({model.name})" if model is not None else "Box to mask (GrabCut)"
    return Job(text, compute, finish)


def _need_selection(ctx: Context, what: str) -> int:
    if ctx.selected_id is None:
        raise Refusal(f"{what}: select an instance first (click it with the Select tool, V)")
    return int(ctx.selected_id)


class NeedsCategory(AnnotatorError):
    """A new instance was drawn while the project has no category. The window asks for a class
    name and runs the same edit again (:meth:`annotator.ui.editing.EditingMixin._handle`): the
    drawn shape is never thrown away."""


def _need_category(ctx: Context) -> int:
    if ctx.category_id is None:
        raise NeedsCategory("no class yet: name the class of this shape")
    return int(ctx.category_id)


def command_for(edit: Edit, ctx: Context, project=None):
    """The :class:`~annotator.tools.commands.Command` (or a :class:`Job` for GrabCut / a model) for an
    edit, or ``None`` (``select`` is handled by the window).

    - stroke: paint / erase the selected instance; a brush stroke with nothing selected
      creates a new instance.
    - polygon: a new (polygon-sourced) instance; with a selection, Shift cuts the polygon out
      of it (a hole when inside) and Ctrl adds it to it.
    - box: the model's mask in the box (``ctx.box_model``), else GrabCut -> a new instance
      (:func:`box_mask_job`).
    - wand: flood fill with the tolerance -> a new instance; Shift adds it to the selection.
    - refine: GrabCut of the selected mask with include / exclude strokes.
    - vertex edits: the selected polygon-sourced instance.
    """
    h, w = ctx.image.shape[:2]
    img_id = ctx.image_id
    if edit.kind == "stroke":
        erase, radius = edit.data["erase"], edit.data["radius"]
        if ctx.selected_id is None:
            if erase:
                _need_selection(ctx, "eraser")
            return commands.add_mask(img_id, _need_category(ctx), mask_ops.stroke_mask((h, w), edit.points, radius),
                                     text="Brush (new instance)")
        return commands.brush_stroke(img_id, ctx.selected_id, edit.points, radius, erase=erase)
    if edit.kind == "polygon":
        if ctx.selected_id is not None and ("shift" in edit.modifiers or "ctrl" in edit.modifiers):
            return commands.polygon_edit(img_id, ctx.selected_id, edit.points, cut="shift" in edit.modifiers)
        flat = [float(v) for p in edit.points for v in p]
        return commands.add_mask(img_id, _need_category(ctx), polygon=[flat], text="Polygon")
    if edit.kind == "wand":
        (x, y), tol, image = edit.points[0], ctx.tolerance, ctx.image
        region = mask_ops.magic_wand(image, x, y, tol)
        if "shift" in edit.modifiers and ctx.selected_id is not None:
            return commands.edit_mask(img_id, ctx.selected_id, lambda m: m | region, "Magic wand (add)")
        return commands.add_mask(img_id, _need_category(ctx), region, text="Magic wand")
    if edit.kind == "box":
        (x0, y0), (x1, y1) = edit.points
        return box_mask_job(ctx, (x0, y0, x1, y1), ctx.box_model)
    if edit.kind == "refine":
        sel = _need_selection(ctx, "GrabCut refine")
        if project is None:
            raise AnnotatorError("GrabCut refine needs the project")
        current = commands.current_mask(project, sel)
        inc = np.zeros((h, w), bool)
        exc = np.zeros((h, w), bool)
        for pts, include in edit.data["strokes"]:
            stroke = mask_ops.stroke_mask((h, w), pts, edit.data["radius"])
            if include:
                inc |= stroke
            else:
                exc |= stroke
        image = ctx.image
        return Job("GrabCut refine", lambda: mask_ops.grabcut_refine(image, current, inc, exc),
                   lambda m: commands.set_mask(img_id, sel, m, text="GrabCut refine"))
    if edit.kind in ("move_vertex", "insert_vertex", "delete_vertex"):
        sel = _need_selection(ctx, "vertex edit")
        poly = ctx.selected_polygon
        if not poly:
            raise Refusal("vertex edit: the selected instance has no polygon (it is a painted mask)")
        part, index = edit.data["part"], edit.data["index"]
        if edit.kind == "move_vertex":
            new = mask_ops.move_vertex(poly, part, index, *edit.points[0])
        elif edit.kind == "insert_vertex":
            new = mask_ops.insert_vertex(poly, part, index, *edit.points[0])
        else:
            new = mask_ops.delete_vertex(poly, part, index)
            if not new:
                return commands.delete(img_id, [sel])
        return commands.set_polygon(img_id, sel, new)
    return None
