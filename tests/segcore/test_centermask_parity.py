"""CenterMask equals the official centermask2 code on identical weights, end to end, on a real image.

Fixtures ``tests/fixtures/centermask_parity_<arch>.npz`` (``V-39-eSE``, ``Lite V-19-eSE``,
``R-50``) hold what the official code (centermask2 on detectron2, CPU;
``tests/fixtures/d2_parity_make.py``) gave on coco-tiny ``val2017/000000005001.jpg`` with the
seeded official-layout weights of ``d2_parity_weights.parity_state_dict``: raw FCOS outputs, P3,
the FCOS detections (unclipped boxes), their RoI levels (Eq. 2), SAG-Mask logits, MaskIoU
outputs and mask scores, the same heads on given boxes (one per pyramid level and one crossing
the border) and the final ``detector_postprocess`` instances.

Here the same weights are regenerated (digest checked), imported as a user does
(``annotator import-weights`` -> segcore checkpoint -> ``Predictor.from_checkpoint``) and the
**app path** runs: ``Predictor.predict`` on the RGB uint8 image. That one forward's raw outputs
and the prediction are compared with the fixture: the predictor's input equals detectron2's
``DefaultPredictor`` input bit for bit, raw outputs within 1e-4, the same FCOS detections and
RoI levels, the same final detections (classes, box scores and mask scores within 1e-4, boxes
within 1e-4 x the image side as in the YOLACT parity test) and masks with IoU >= 0.999.
segcore's order is the mask-score order (stable), centermask2's the FCOS order: the final
instances are compared in the former. Negative control: one perturbed SAG-Mask weight makes
the same comparison fail.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from segcore.modeling.centermask.pooler import assign_boxes_to_levels_by_ratio
from segcore.modeling.fcos import fcos_detect

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
_spec = importlib.util.spec_from_file_location("parity_check", FIXTURES / "parity_check.py")
pc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pc)

ARCHS = ["centermask_v39", "centermask_lite_v19", "centermask_r50"]


def _check(figures: dict, problems: list, name: str, ours, ref, tol: float = pc.TOL) -> None:
    figures[name] = pc.max_diff(ours, ref)
    if figures[name] > tol:
        problems.append(f"{name} differ by {figures[name]:.3g}")


def _problems(run, figures: dict) -> list[str]:
    """Every difference from the official outputs (empty = parity); ``figures`` gets the max diffs."""
    z, out = run.z, run.outputs
    model = run.predictor.model
    problems = pc.input_problems(run)
    hi, wi = (int(v) for v in z["input_hw"])
    box_tol = pc.TOL * max(hi, wi)
    sel = z["loc_index"]
    if [list(s) for s in out["level_sizes"]] != z["level_sizes"].tolist():
        return problems + ["FCOS level sizes differ"]
    _check(figures, problems, "logits", out["logits"][0, sel], z["logits"])
    _check(figures, problems, "bbox_reg", out["bbox_reg"][0, sel], z["bbox_reg"])
    _check(figures, problems, "ctrness", out["ctrness"][0, sel], z["ctrness"])
    _check(figures, problems, "p3", out["features"][0][0, ::16, ::8, ::8], z["p3_sample"])
    # FCOS detections (unclipped, FCOS order) and the RoI heads' results on them, from the forward
    det = fcos_detect(out, pre_nms_thresh=float(z["score_thresh"]), pre_nms_topk=int(z["pre_nms_topk"]),
                      nms_thresh=float(z["nms_thresh"]), post_nms_topk=int(z["post_nms_topk"]),
                      thresh_with_ctr=bool(z["thresh_with_ctr"]))[0]
    if det["loc_inds"].tolist() != z["det_loc_index"].tolist() or det["classes"].tolist() != z["det_classes"].tolist():
        return problems + [f"FCOS detections differ ({len(det['scores'])} vs official {len(z['det_scores'])})"]
    fwd = out["detections"][0]
    if fwd["classes"].tolist() != z["det_classes"].tolist():
        return problems + ["the forward's detections differ from FCOS's"]
    _check(figures, problems, "det_boxes", fwd["boxes"], z["det_boxes"], box_tol)
    _check(figures, problems, "det_scores", fwd["scores"], z["det_scores"])
    _check(figures, problems, "det_mask_scores", fwd["mask_scores"], z["det_mask_scores"])
    _check(figures, problems, "det_mask_probs", fwd["mask_probs"], torch.from_numpy(z["det_mask_logits"]).sigmoid())
    if (assign_boxes_to_levels_by_ratio(fwd["boxes"], float(hi * wi)) - 3).tolist() != z["det_pool_level"].tolist():
        problems.append("RoI levels (Eq. 2) of the detections differ")
    # the heads on the official boxes: detections and given boxes (P5, P4, P3, one crossing the border)
    rh, feats = model.roi_heads, [f.float() for f in out["features"]]
    for tag in ("det", "prompt"):
        boxes = torch.from_numpy(z[f"{tag}_boxes"])
        classes = torch.from_numpy(z["det_classes" if tag == "det" else "prompt_classes"]).long()
        if (assign_boxes_to_levels_by_ratio(boxes, float(hi * wi)) - 3).tolist() != z[f"{tag}_pool_level"].tolist():
            problems.append(f"RoI levels (Eq. 2) of the {tag} boxes differ")
        with torch.no_grad():
            pooled = rh.pooler(feats, [boxes], [(hi, wi)])
            logits = rh.mask_head(pooled)[torch.arange(len(classes)), classes]
            maskiou = rh.maskiou_head(pooled, logits.sigmoid()[:, None])
        _check(figures, problems, f"{tag}_mask_logits", logits, z[f"{tag}_mask_logits"])
        _check(figures, problems, f"{tag}_maskiou", maskiou, z[f"{tag}_maskiou"])
    # final detections: boxes clipped, two scores each (segcore sorts by mask score, centermask2
    # keeps the FCOS order: matched one to one)
    return problems + pc.final_problems(run, z["mask_scores"], z["scores"], figures)


@pytest.fixture(scope="module", params=ARCHS)
def run(request, coco_tiny, tmp_path_factory):
    r = pc.fixture_run("centermask", request.param, coco_tiny, tmp_path_factory)
    model, z = r.predictor.model, r.z                                              # the FCOS settings are official
    assert (model.max_detections, model.pre_nms_topk, model.nms_threshold, False) == \
        (int(z["post_nms_topk"]), int(z["pre_nms_topk"]), float(z["nms_thresh"]), bool(z["thresh_with_ctr"]))
    return r


def test_predictor_equals_official_centermask(run):
    """Weights import completely; raw outputs, FCOS detections, RoI levels, SAG-Mask and MaskIoU
    outputs and the Predictor's final detections (masks, box and mask scores) equal the official
    ones; most detections cross the image border (unclipped RoIs, pasted at the clipped box)."""
    pc.assert_parity(run, _problems, min_detections=40)


def test_negative_control(coco_tiny, tmp_path):
    """One perturbed weight (+0.05 on one element of the first SAG-Mask conv) and the comparison fails."""
    problems = pc.perturbed_problems("centermask", "centermask_lite_v19", "roi_heads.mask_head.mask_fcn1.weight",
                                     coco_tiny, tmp_path, _problems)
    assert problems and any("mask_logits" in p for p in problems), problems
