"""Box-to-mask decision without Qt (annotator.tools.interaction.box_mask_job): the model's mask
when a box-capable model is given (lazy loader called only off the GUI thread, i.e. in
``compute``), GrabCut without a model, for YOLACT (PromptNotSupported, silently) and after a
model error or an empty model mask (with a note for the user); the resulting commands on a real
store (model provenance vs human), undo byte-identical."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from annotator.errors import AnnotatorError
from annotator.project import Project
from annotator.tools import commands, interaction, mask_ops
from annotator.tools.interaction import BoxMask, BoxModel, Context, Edit, box_mask_job, command_for
from segcore.prompt import PromptNotSupported

H, W = 120, 160
BOX = (20.0, 30.0, 80.0, 90.0)


def _scene():
    """A dark image with a bright disc (the object) and a mid-grey square."""
    img = np.full((H, W, 3), 30, np.uint8)
    cv2.circle(img, (50, 60), 25, (220, 200, 40), -1)
    img[20:50, 100:140] = (120, 120, 120)
    return img


@pytest.fixture
def project(tmp_path):
    imgs = tmp_path / "images"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "a.png"), cv2.cvtColor(_scene(), cv2.COLOR_RGB2BGR))
    p = Project.create(tmp_path / "proj", images_dir=imgs)
    p.add_category("ball")
    p.add_category("box")
    p.register_model_version(arch="centermask_tiny", checkpoint=tmp_path / "m.pth",
                             categories=[{"id": 7, "name": "box"}, {"id": 8, "name": "ball"}])
    yield p
    p.close()


class FakePrompter:
    """Records its calls; returns a square inside the box, or raises / returns nothing."""

    def __init__(self, mode="ok", score=0.8):
        self.mode, self.score, self.calls = mode, score, []

    def predict(self, image, boxes, category_ids=None):
        self.calls.append((image.shape, np.asarray(boxes).tolist(), category_ids))
        if self.mode == "unsupported":
            raise PromptNotSupported("yolact_tiny: no box-conditioned mask head")
        if self.mode == "error":
            raise RuntimeError("CUDA out of memory\nmore lines")
        m = np.zeros(image.shape[:2], bool)
        x0, y0, x1, y1 = (int(v) for v in boxes[0])
        if self.mode == "ok":
            m[y0 + 5:y1 - 5, x0 + 5:x1 - 5] = True
        elif self.mode == "box":          # an untrained head: the box itself, filled
            m[y0:y1, x0:x1] = True
        elif self.mode == "speck":
            m[y0 + 20:y0 + 22, x0 + 20:x0 + 22] = True
        elif self.mode == "unsure":       # a fine shape, but the model gives it a very low score
            m[y0 + 5:y1 - 5, x0 + 5:x1 - 5] = True
        return type("R", (), {"masks": m[None], "scores": None if self.score is None else np.array([self.score])})()


def _ctx(project, model=None, category_id=None):
    img = project.images()[0]
    cat = category_id if category_id is not None else project.categories()[0].id
    return Context(img.id, _scene(), cat, box_model=model)


def _rows(project, image_id):
    return project._conn.execute("SELECT * FROM annotations WHERE image_id = ? ORDER BY id", (image_id,)).fetchall()


def test_model_backed_box_is_lazy_and_stored_with_model_provenance(project):
    fake = FakePrompter()
    loads = []

    def loader():
        loads.append(1)
        return fake

    ctx = _ctx(project, BoxModel(loader, version=1, category_id=8, name="model v1"))
    job = box_mask_job(ctx, (80.0, 90.0, 20.0, 30.0), ctx.box_model)     # dragged up-left: corners sorted
    assert loads == [] and fake.calls == [] and job.text == "Box to mask (model v1)"   # nothing on the GUI thread
    result = job.compute()
    assert loads == [1] and fake.calls == [((H, W, 3), [[20.0, 30.0, 80.0, 90.0]], [8])]
    assert isinstance(result, BoxMask) and result.method == "model" and result.note is None
    assert result.model_version == 1 and result.score == pytest.approx(0.8)
    assert interaction.result_mask(result).sum() == 50 * 50
    before = _rows(project, ctx.image_id)
    history = commands.History()
    cmd = history.execute(project, job.finish(result))
    ann = project.annotation(cmd.result)
    assert (ann.source, ann.model_version, ann.review_state, ann.category_id) == ("model", 1, "edited", ctx.category_id)
    assert ann.score == pytest.approx(0.8) and ann.bbox == [25.0, 35.0, 50.0, 50.0]
    after = _rows(project, ctx.image_id)
    history.undo(project, ctx.image_id)
    assert _rows(project, ctx.image_id) == before
    history.redo(project, ctx.image_id)
    assert _rows(project, ctx.image_id) == after


def test_no_model_is_grabcut_as_before(project):
    ctx = _ctx(project)
    job = command_for(Edit("box", [(20.0, 30.0), (80.0, 90.0)]), ctx, project)
    assert isinstance(job, interaction.Job) and job.text == "Box to mask (GrabCut)"
    result = job.compute()
    assert result.method == "grabcut" and result.note is None
    assert np.array_equal(result.mask, mask_ops.grabcut_box(ctx.image, BOX))
    cmd = commands.History().execute(project, job.finish(result))
    ann = project.annotation(cmd.result)
    assert (ann.source, ann.model_version, ann.review_state, ann.score) == ("human", None, "accepted", None)


@pytest.mark.parametrize("mode,note", [("unsupported", None), ("error", "failed (CUDA out of memory)"),
                                       ("empty", "found no object"), ("box", "fills 100 % of the box"),
                                       ("speck", "covers 0.1 % of the box"), ("unsure", "mask score 0.03")])
def test_model_fallbacks_to_grabcut(project, mode, note):
    fake = FakePrompter(mode, score=0.03 if mode == "unsure" else 0.8)
    ctx = _ctx(project, BoxModel(fake, version=1, name="model v1"))
    job = command_for(Edit("box", [(20.0, 30.0), (80.0, 90.0)]), ctx, project)
    result = job.compute()                                  # never raises
    assert len(fake.calls) == 1 and fake.calls[0][2] is None
    assert result.method == "grabcut" and np.array_equal(result.mask, mask_ops.grabcut_box(ctx.image, BOX))
    if note is None:
        assert result.note is None                          # YOLACT: GrabCut is simply the tool
    else:
        assert note in result.note and "GrabCut" in result.note and "\n" not in result.note
    ann = project.annotation(commands.History().execute(project, job.finish(result)).result)
    assert ann.source == "human" and ann.model_version is None


def test_loader_error_falls_back(project):
    def broken():
        raise ValueError("m.pth: not a segcore checkpoint")

    result = box_mask_job(_ctx(project), BOX, BoxModel(broken, version=1, name="model v1")).compute()
    assert result.method == "grabcut" and "model v1 failed (m.pth: not a segcore checkpoint)" in result.note


def test_no_category_is_a_user_error(project):
    ctx = _ctx(project)
    ctx.category_id = None
    with pytest.raises(AnnotatorError, match="no class yet"):
        box_mask_job(ctx, BOX, None)


def test_architecture_and_category_helpers():
    assert interaction.is_box_model_arch("centermask_lite_v19") and interaction.is_box_model_arch("blendmask_r50")
    assert not interaction.is_box_model_arch("yolact_r50_550") and not interaction.is_box_model_arch("")
    cats = [{"id": 7, "name": "box"}, {"id": 8, "name": "ball"}]
    assert interaction.model_category_for("ball", cats) == 8
    assert interaction.model_category_for("cat", cats) is None and interaction.model_category_for(None, cats) is None
