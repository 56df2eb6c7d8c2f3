"""BlendMask equals the official AdelaiDet code on identical weights, end to end, on a real image.

Fixtures ``tests/fixtures/blendmask_parity_<arch>.npz`` (``R_50_1x``, ``RT_R_50``, ``550_R_50``)
hold what the official code (AdelaiDet on detectron2, CPU; ``tests/fixtures/d2_parity_make.py``)
gave on coco-tiny ``val2017/000000005001.jpg`` with the seeded official-layout weights of
``d2_parity_weights.parity_state_dict``: raw FCOS outputs, attentions and bases, the FCOS
detections, blended mask probabilities and the final ``detector_postprocess`` instances.

Here the same weights are regenerated (digest checked), imported as a user does
(``annotator import-weights`` -> segcore checkpoint -> ``Predictor.from_checkpoint``) and the
**app path** runs: ``Predictor.predict`` on the RGB uint8 image. That one forward's raw outputs
and the prediction are compared with the fixture: the predictor's input equals detectron2's
``DefaultPredictor`` input bit for bit, raw outputs within 1e-4, the same FCOS detections, the
same final detections (classes, scores within 1e-4, boxes within 1e-4 x the image side as in
the YOLACT parity test) and masks with IoU >= 0.999.
Negative control: one perturbed weight makes the same comparison fail.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from segcore.modeling.blendmask.blender import blend
from segcore.modeling.fcos import fcos_detect

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("parity_check", FIXTURES / "parity_check.py")
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)

ARCHS = ["blendmask_r50", "blendmask_rt_r50", "blendmask_550_r50"]
TOP_CH_STRIDE = 7  # the fixture keeps every 7th attention channel


def _problems(run, figures: dict) -> list[str]:
    """Every difference from the official outputs (empty = parity); ``figures`` gets the max diffs."""
    z, out = run.z, run.outputs
    problems = pc.input_problems(run)
    sel = z["loc_index"]
    if [list(s) for s in out["level_sizes"]] != z["level_sizes"].tolist():
        return problems + ["FCOS level sizes differ"]
    if list(out["bases"].shape[1:]) != z["bases_shape"].tolist():
        return problems + ["bases shape differs"]
    raw = {
        "logits": (out["logits"][0, sel], z["logits"]),
        "bbox_reg": (out["bbox_reg"][0, sel], z["bbox_reg"]),
        "ctrness": (out["ctrness"][0, sel], z["ctrness"]),
        "top_feats": (out["top_feats"][0, sel][:, ::TOP_CH_STRIDE], z["top_feats"]),
        "bases": (out["bases"][0][:, ::4, ::4], z["bases"]),
    }
    for name, (ours, ref) in raw.items():
        figures[name] = pc.max_diff(ours, ref)
        if figures[name] > pc.TOL:
            problems.append(f"raw {name} differ by {figures[name]:.3g}")
    # the FCOS detections before detector_postprocess (official order, unclipped input pixels)
    det = fcos_detect(out, pre_nms_thresh=float(z["score_thresh"]), pre_nms_topk=int(z["pre_nms_topk"]),
                      nms_thresh=float(z["nms_thresh"]), post_nms_topk=int(z["post_nms_topk"]),
                      thresh_with_ctr=bool(z["thresh_with_ctr"]))[0]
    if det["loc_inds"].tolist() != z["det_loc_index"].tolist() or det["classes"].tolist() != z["det_classes"].tolist():
        return problems + [f"FCOS detections differ ({len(det['scores'])} vs official {len(z['det_scores'])})"]
    figures["det_boxes"] = pc.max_diff(det["boxes"], z["det_boxes"])
    figures["det_scores"] = pc.max_diff(det["scores"], z["det_scores"])
    t = len(z["det_mask_probs"])
    probs = blend(out["bases"].float(), [det["boxes"][:t]], out["top_feats"][0, det["loc_inds"][:t]].float(),
                  attn_size=14).sigmoid()
    figures["det_mask_probs"] = pc.max_diff(probs, z["det_mask_probs"])
    for name in ("det_boxes", "det_scores", "det_mask_probs"):  # boxes: pixels, TOL x the input side
        if figures[name] > pc.TOL * (max(z["input_hw"]) if name == "det_boxes" else 1):
            problems.append(f"{name} differ by {figures[name]:.3g}")
    # final detections (official order = descending score = segcore's order, near ties aside)
    return problems + pc.final_problems(run, z["scores"], None, figures)


@pytest.fixture(scope="module", params=ARCHS)
def run(request, coco_tiny, tmp_path_factory):
    r = pc.fixture_run("blendmask", request.param, coco_tiny, tmp_path_factory)
    assert r.predictor.model.thresh_with_ctr == bool(r.z["thresh_with_ctr"])   # the FCOS settings are official
    return r


def test_predictor_equals_official_blendmask(run):
    """Weights import completely; raw outputs, FCOS detections and the Predictor's final
    detections (masks included) equal the official ones."""
    pc.assert_parity(run, _problems, min_detections=50)


def test_negative_control(coco_tiny, tmp_path):
    """One perturbed weight (+0.05 on one element of a bottom-module conv) and the comparison fails."""
    problems = pc.perturbed_problems("blendmask", "blendmask_550_r50", "basis_module.refine.0.0.weight", coco_tiny,
                                     tmp_path, _problems)
    assert problems and any("bases" in p for p in problems), problems


def test_official_resize_rounding_and_antialias():
    """The input path is detectron2's: get_output_shape rounding (which the training helper
    ``short_side_size`` does not always give) and Pillow's bilinear (antialiased when shrinking)."""
    from PIL import Image

    from segcore.data.transforms import short_side_size
    from segcore.modeling.fcos.d2_input import d2_output_shape, d2_test_resize

    def official(h, w, short, max_size):  # detectron2 ResizeShortestEdge.get_output_shape, verbatim
        size = short * 1.0
        scale = size / min(h, w)
        newh, neww = (size, scale * w) if h < w else (scale * h, size)
        if max(newh, neww) > max_size:
            scale = max_size * 1.0 / max(newh, neww)
            newh, neww = newh * scale, neww * scale
        return int(newh + 0.5), int(neww + 0.5)

    sizes = [(h, w) for h in range(100, 1400, 7) for w in range(100, 1400, 11)]
    assert all(d2_output_shape(h, w, 800, 1333) == official(h, w, 800, 1333) for h, w in sizes)
    assert any(short_side_size(h, w, 800, 1333) != official(h, w, 800, 1333) for h, w in sizes)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    out = d2_test_resize(img, 600, 1000)
    ref = np.array(Image.fromarray(img).resize((800, 600), Image.BILINEAR))
    assert out.dtype == torch.uint8 and torch.equal(out, torch.from_numpy(ref).permute(2, 0, 1))
