"""Box prompts (segcore.prompt): prompted masks equal the predictor's masks for its own detections
(BlendMask at the detection's FCOS location, CenterMask with the detection's class), the
location / class choice rules, one backbone pass per image, clipping, empty input, argument
errors, YOLACT refused.

Models are tiny random-init configs in eval mode. Random init gives FCOS box regressions of
~0 (tiny boxes) and near-uniform attentions, so a few layers are re-drawn with a fixed seed to
get boxes of tens of pixels and varied masks; nothing is trained.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from segcore.modeling.blendmask.box_prompt import prompt_locations
from segcore.modeling.centermask.box_prompt import centermask_detections
from segcore.modeling.fcos import fcos_detect
from segcore.modeling.fcos.d2_input import scale_and_clip_boxes
from segcore.modeling.registry import build_model
from segcore.predictor import Predictor
from segcore.prompt import BoxPrediction, BoxPrompter, PromptNotSupported

CATS = [{"id": 11, "name": "a"}, {"id": 22, "name": "b"}, {"id": 33, "name": "c"}]


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[h // 4:h // 2, w // 3:w // 2] = (250, 40, 40)        # some structure for the features
    return img


def _spread_boxes(model):
    with torch.no_grad():
        head = model.proposal_generator.fcos_head
        head.bbox_pred.bias.fill_(2.0)                         # ~2 strides each side
        torch.nn.init.normal_(head.bbox_pred.weight, std=0.05)


@pytest.fixture(scope="module")
def blendmask():
    torch.manual_seed(0)
    model = build_model("blendmask_tiny", num_classes=3).eval()
    _spread_boxes(model)
    with torch.no_grad():
        torch.nn.init.normal_(model.top_layer.weight, std=0.05)
    return Predictor(model, CATS, device="cpu")


@pytest.fixture(scope="module")
def centermask():
    torch.manual_seed(0)
    model = build_model("centermask_tiny", num_classes=3).eval()
    _spread_boxes(model)
    with torch.no_grad():
        torch.nn.init.normal_(model.roi_heads.mask_head.predictor.weight, std=0.05)
    return Predictor(model, CATS, device="cpu")


def _raw(predictor, image):
    with torch.inference_mode():
        out = predictor.model(predictor.preprocess(image))
    return {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in out.items()}


def _count_backbone(model):
    calls = []
    handle = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


# ------------------------------------------------------------------ BlendMask
@pytest.mark.parametrize("hw,input_hw", [((512, 640), (256, 320)), ((300, 401), (256, 342))])
def test_blendmask_prompt_at_detection_location_equals_predictor(blendmask, hw, input_hw):
    """Each detection's box + its own FCOS location -> the predictor's mask of it. At the
    power-of-2 scale (512 x 640 -> 256 x 320) the box round trip original -> input pixels is
    exact, so the masks must be identical; at 300 x 401 -> 256 x 342 the round trip may move a
    box by one float ulp, which can flip a pixel whose probability is 0.5 to within 1e-7, so a
    handful of pixels are tolerated there."""
    h, w = hw
    img = _image(h, w)
    pred = blendmask.predict(img, score_threshold=0.0)
    assert len(pred) > 20
    # the predictor's detections and their locations (same FCOS settings as the post-processing)
    d = fcos_detect(_raw(blendmask, img), pre_nms_thresh=0.0, thresh_with_ctr=True)[0]
    hi, wi = input_hw
    b = d["boxes"]
    scaled, keep = scale_and_clip_boxes(b, (h, w), input_hw)
    assert np.array_equal(scaled.numpy(), pred.boxes)
    # a detection crossing the border is blended in its unclipped box and pasted at the clipped
    # one (detectron2); a prompt box is clipped first: compare the detections inside the image
    kb = b[keep]
    inside = ((kb[:, 0] >= 0) & (kb[:, 1] >= 0) & (kb[:, 2] <= wi) & (kb[:, 3] <= hi)).numpy()
    assert inside.sum() > 20
    prompter = BoxPrompter(blendmask)
    res = prompter.predict(img, pred.boxes[inside], locations=d["loc_inds"][keep].numpy()[inside].tolist())
    expected = pred.masks[inside]
    assert expected.sum(axis=(1, 2)).min() > 0 and res.masks.any(axis=(1, 2)).all()
    diff = (res.masks != expected).sum(axis=(1, 2))
    if (h, w) == (512, 640):
        assert diff.max() == 0
    else:
        assert diff.max() <= 3 and (diff == 0).mean() > 0.9
    assert res.scores is None and res.masks.dtype == bool and res.masks.shape == (int(inside.sum()), h, w)


def test_blendmask_location_rule():
    """Level from max(w, h) / 2 on the size ranges (ties go down), the cell nearest the box
    centre, kept inside the box; input 256 x 320 -> P3 32 x 40, P4 16 x 20, P5 8 x 10."""
    sizes, strides, soi = [(32, 40), (16, 20), (8, 10)], [8, 16, 32], (64, 128)
    boxes = torch.tensor([
        [0.0, 0.0, 40.0, 40.0],      # half 20 -> P3; centre 20 -> (20 - 4) / 8 = 2 -> cell (2, 2)
        [0.0, 0.0, 128.0, 60.0],     # half 64 (boundary) -> P3; centre (64, 30) -> cells (8, 3.25 -> 3)
        [10.0, 10.0, 140.0, 50.0],   # half 65 -> P4; centre (75, 30) -> (75 - 8) / 16 = 4.19 -> 4, 1.375 -> 1
        [0.0, 0.0, 320.0, 256.0],    # half 160 -> P5 (last level); centre (160, 128) -> (4.5 -> 5, 3.5 -> 4)
        [9.0, 30.0, 11.0, 31.0],     # narrower than a stride, no location inside: the nearest cell
        [0.0, 100.0, 30.0, 220.0],   # tall: half 60 -> P3; centre y 160 -> 19.5 -> 20; x 15 -> 1.375 -> 1
    ])
    got = prompt_locations(boxes, sizes, strides, soi).tolist()
    p4, p5 = 32 * 40, 32 * 40 + 16 * 20
    assert got == [2 * 40 + 2, 3 * 40 + 8, p4 + 1 * 20 + 4, p5 + 4 * 10 + 5, 3 * 40 + 1, 20 * 40 + 1]
    # every chosen location lies inside its box (all these boxes contain one)
    locs = torch.cat([torch.stack(torch.meshgrid(torch.arange(hh) * s + s // 2, torch.arange(ww) * s + s // 2,
                                                 indexing="ij")[::-1], -1).reshape(-1, 2)
                      for (hh, ww), s in zip(sizes, strides)]).float()
    xy = locs[got]
    inside = (xy[:, 0] > boxes[:, 0]) & (xy[:, 0] < boxes[:, 2]) & (xy[:, 1] > boxes[:, 1]) & (xy[:, 1] < boxes[:, 3])
    assert inside.tolist() == [True, True, True, True, False, True]


def test_blendmask_auto_location_and_one_backbone_pass(blendmask):
    img = _image(512, 640, seed=1)
    prompter = BoxPrompter(blendmask)
    calls, handle = _count_backbone(blendmask.model)
    try:
        boxes = np.array([[100, 60, 300, 260], [20.5, 30.25, 90, 140], [400, 300, 620, 500]], np.float32)
        res = prompter.predict(img, boxes)
        again = prompter.predict(img.copy(), boxes[1:2])               # same pixels: cached outputs
        assert len(calls) == 1
        # the auto rule's locations, passed explicitly, give the same masks
        net = torch.from_numpy(boxes) * 0.5
        locs = prompt_locations(net, [(32, 40), (16, 20), (8, 10)], [8, 16, 32], (64, 128)).tolist()
        explicit = prompter.predict(img, boxes, locations=locs)
        assert len(calls) == 1
        prompter.predict(_image(512, 640, seed=2), boxes[:1])           # another image: one more pass
        assert len(calls) == 2
    finally:
        handle.remove()
    assert np.array_equal(res.masks, explicit.masks) and np.array_equal(again.masks[0], res.masks[1])
    assert res.masks.any(axis=(1, 2)).all()
    for m, (x0, y0, x1, y1) in zip(res.masks, boxes):                    # nothing outside the box
        ys, xs = np.nonzero(m)
        assert xs.min() >= int(x0) and xs.max() <= int(x1) and ys.min() >= int(y0) and ys.max() <= int(y1)
    assert res.category_ids.dtype == np.int64 and set(res.category_ids) <= {11, 22, 33}


# ------------------------------------------------------------------ CenterMask
def test_centermask_prompt_with_detection_class_equals_predictor(centermask):
    """A detection's box and class -> the predictor's mask of it, for the detections inside the
    image (a detection crossing the border is pooled at its unclipped FCOS box, as centermask2
    does, while a prompt box is clipped first)."""
    h, w = 512, 640
    img = _image(h, w)
    pred = centermask.predict(img, score_threshold=0.0)
    assert len(pred) == 50 and pred.masks.any(axis=(1, 2)).sum() > 40
    b = pred.boxes
    inside = (b[:, 0] > 0) & (b[:, 1] > 0) & (b[:, 2] < w) & (b[:, 3] < h)   # clipped boxes touch the border
    assert 20 < inside.sum() < 50
    prompter = BoxPrompter(centermask)
    res = prompter.predict(img, b[inside], pred.category_ids[inside])
    assert np.array_equal(res.masks, pred.masks[inside])
    assert np.array_equal(res.category_ids, pred.category_ids[inside])
    # predictor score = FCOS box score x predicted IoU (not clamped); the prompt's score is the
    # predicted IoU clamped to [0, 1]
    assert res.scores.dtype == np.float32 and ((res.scores >= 0) & (res.scores <= 1)).all()
    np.testing.assert_allclose(res.scores, np.clip(pred.scores[inside] / pred.box_scores[inside], 0, 1),
                               rtol=1e-4, atol=1e-6)
    # one box alone (another batch size) gives the same mask
    k = int(np.nonzero(inside)[0][7])
    one = prompter.predict(img, b[k:k + 1], pred.category_ids[k:k + 1])
    assert np.array_equal(one.masks[0], pred.masks[k])


def test_centermask_class_choice():
    """Given class > best overlapping FCOS detection (IoU > 0.5) > largest mean mask probability."""
    torch.manual_seed(0)
    model = build_model("centermask_tiny", num_classes=3).eval()
    _spread_boxes(model)
    with torch.no_grad():
        model.proposal_generator.fcos_head.cls_logits.bias.copy_(torch.tensor([-9.0, 3.0, -9.0]))  # FCOS: class 1
        model.roi_heads.mask_head.predictor.bias.copy_(torch.tensor([0.0, -4.0, 3.0]))            # masks: channel 2
    predictor = Predictor(model, CATS, device="cpu")
    img = _image(512, 640)
    prompter = BoxPrompter(predictor)
    dets = centermask_detections(_raw(predictor, img), (256, 320))
    assert len(dets["boxes"]) > 0 and (dets["classes"] == 1).all()
    det_box = (dets["boxes"][0] * 2).numpy()
    strip = np.array([0.0, 0.0, 640.0, 30.0])       # IoU < 0.5 with every (roughly square) detection
    assert float(box_iou(torch.tensor(strip[None] / 2, dtype=torch.float32), dets["boxes"]).max()) < 0.5
    boxes = np.stack([det_box, det_box, strip])
    res = prompter.predict(img, boxes, [11, None, None])
    assert res.category_ids.tolist() == [11, 22, 33]
    # the chosen channel's mask = the mask asked for by that class explicitly
    explicit = prompter.predict(img, boxes, [11, 22, 33])
    assert np.array_equal(res.masks, explicit.masks) and np.allclose(res.scores, explicit.scores)


# ------------------------------------------------------------------ API contract
def test_shapes_clipping_and_empty_boxes(centermask):
    img = _image(120, 200)
    prompter = BoxPrompter(centermask)
    calls, handle = _count_backbone(centermask.model)
    try:
        empty = prompter.predict(img, np.zeros((0, 4)))
        assert len(calls) == 0                                   # nothing to do: no backbone pass
        assert isinstance(empty, BoxPrediction) and empty.masks.shape == (0, 120, 200)
        assert empty.masks.dtype == bool and empty.boxes.shape == (0, 4) and empty.scores.shape == (0,)
        assert prompter.predict_masks(img, []).shape == (0, 120, 200)
        boxes = [[150, -30, 260, 90],       # sticks out right and top: clipped
                 [90, 100, 40, 60],         # corners swapped: sorted
                 [300, 10, 400, 50],        # entirely outside: empty
                 [10, 10, 10, 80]]          # zero width: empty
        res = prompter.predict(img, boxes)
        assert len(calls) == 1
    finally:
        handle.remove()
    assert res.masks.shape == (4, 120, 200) and res.masks.dtype == bool
    assert res.boxes.dtype == np.float32 and res.scores.dtype == np.float32 and res.category_ids.dtype == np.int64
    np.testing.assert_array_equal(res.boxes, [[150, 0, 200, 90], [40, 60, 90, 100], [200, 10, 200, 50],
                                              [10, 10, 10, 80]])
    assert not res.masks[2:].any() and res.category_ids[2:].tolist() == [-1, -1] and res.scores[2:].tolist() == [0, 0]
    assert not res.masks[0][:, :150].any() and not res.masks[0][91:].any()
    assert not res.masks[1][:, :40].any() and not res.masks[1][:, 91:].any()
    assert not res.masks[1][:60].any() and not res.masks[1][101:].any()
    assert prompter.predict_masks(img, boxes[:2]).shape == (2, 120, 200)


def test_argument_errors(centermask, blendmask):
    prompter = BoxPrompter(centermask)
    img = _image(64, 96)
    for bad in (img.astype(np.float32), img[:, :, 0], img.tolist(), img[:, :, :2]):
        with pytest.raises(ValueError, match="^image"):
            prompter.predict(bad, [[0, 0, 10, 10]])
    for bad in ([0, 0, 10, 10], [[0, 0, 10]], [[0, 0, np.nan, 4]], "box"):
        with pytest.raises(ValueError, match="^boxes"):
            prompter.predict(img, bad)
    with pytest.raises(ValueError, match="^category_ids.*44"):
        prompter.predict(img, [[0, 0, 10, 10]], [44])
    with pytest.raises(ValueError, match="^category_ids"):
        prompter.predict(img, [[0, 0, 10, 10]], [11, 22])
    with pytest.raises(ValueError, match="^locations"):
        prompter.predict(img, [[0, 0, 10, 10]], locations=[0])
    with pytest.raises(ValueError, match="^locations"):
        BoxPrompter(blendmask).predict(img, [[0, 0, 10, 10]], locations=[0, 1])


def test_yolact_is_not_supported():
    torch.manual_seed(0)
    pred = Predictor(build_model("yolact_tiny", num_classes=3, input_size=160), CATS, device="cpu")
    with pytest.raises(PromptNotSupported, match="GrabCut"):
        BoxPrompter(pred)
    assert issubclass(PromptNotSupported, ValueError)
