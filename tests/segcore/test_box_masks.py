"""Box-local masks (issue 17, big images): each instance's mask is pasted / upsampled and
thresholded inside its box window and encoded to RLE from a strip of its columns, so memory
follows the boxes, not N x H x W. Every test compares against the whole-image path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from segcore.ops.masks import paste_masks, upsample_masks
from segcore.ops.rle import box_mask_to_rle, rle_counts
from segcore.structures import BoxMasks, Instances
from tests.segcore.test_paste_masks import _boxes  # random boxes, some cut by the image border


def _encode_full(masks: np.ndarray) -> list[str]:
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [r["counts"].decode() for r in rles]


def test_box_local_paste_equals_whole_image_paste_and_its_rle():
    gen = torch.Generator().manual_seed(0)
    n, h, w = 40, 67, 91
    probs = torch.rand(n, 28, 28, generator=gen)
    boxes = _boxes(n, h, w, gen)
    boxes[0] = torch.tensor([-30.0, -30.0, w + 30.0, h + 30.0])   # covers the image
    boxes[1] = torch.tensor([10.0, 10.0, 10.0, 40.0])              # degenerate
    boxes[2] = torch.tensor([w + 5.0, 3.0, w + 20.0, 9.0])         # outside the image
    full = paste_masks(probs, boxes, (h, w))
    local = paste_masks(probs, boxes, (h, w), box_local=True)
    assert isinstance(local, BoxMasks) and local.shape == full.shape
    assert torch.equal(local.full(), full)
    assert int(full[0].sum()) > 0 and not full[1].any() and not full[2].any()
    assert [r["counts"] for r in local.to_rle()] == _encode_full(full.numpy())


@pytest.mark.parametrize("proto_hw,image_hw", [((138, 138), (480, 640)), ((80, 80), (1000, 1333)),
                                               ((69, 69), (37, 50)), ((80, 80), (333, 80))])
def test_box_local_upsample_equals_interpolate(proto_hw, image_hw):
    """YOLACT's masks: the windowed bilinear upsample gives F.interpolate's thresholded masks
    (a pixel may differ only where the value lies within 1e-6 of the threshold)."""
    gen = torch.Generator().manual_seed(1)
    n, (hp, wp) = 30, proto_hw
    probs = torch.rand(n, hp, wp, generator=gen)
    for i in range(n):  # zero outside a random box, as YOLACT's crop does
        y0, x0 = (int(v) for v in torch.randint(0, hp // 2, (2,), generator=gen))
        keep = torch.zeros(hp, wp)
        keep[y0:y0 + 1 + i % (hp // 2), x0:x0 + 1 + (3 * i) % (wp // 2)] = 1
        probs[i] *= keep
    probs[0] = 0.0  # an empty mask
    ref = F.interpolate(probs[:, None], image_hw, mode="bilinear", align_corners=False)[:, 0]
    local = upsample_masks(probs, image_hw, 0.5, box_local=True)
    full = upsample_masks(probs, image_hw, 0.5)
    assert torch.equal(full, ref > 0.5)
    differ = local.full() != (ref > 0.5)
    assert not (differ & ((ref - 0.5).abs() > 1e-6)).any()
    assert int(differ.sum()) <= 2
    assert int(local.full().sum()) > 1000 and local.crops[0].numel() == 0
    assert sum(c.numel() for c in local.crops) < 0.5 * n * image_hw[0] * image_hw[1]  # windows, not images


def test_box_mask_to_rle_edges_equal_pycocotools():
    rng = np.random.default_rng(2)
    h, w = 23, 31
    cases = [(0, 0, 5, 7), (w - 4, h - 3, 4, 3), (0, 0, w, h), (10, 5, 1, 1), (3, 4, 0, 0), (6, 2, 9, 12)]
    for x0, y0, cw, ch in cases:
        crop = rng.random((ch, cw)) > 0.4
        full = np.zeros((h, w), bool)
        full[y0:y0 + ch, x0:x0 + cw] = crop
        rle = box_mask_to_rle(crop, x0, y0, h, w)
        assert rle["counts"] == _encode_full(full[None])[0], (x0, y0, cw, ch)
        assert int(rle_counts(rle)[2].sum()) == h * w
    full_ones = np.ones((h, w), bool)  # a mask that ends with a foreground run
    assert box_mask_to_rle(full_ones, 0, 0, h, w)["counts"] == _encode_full(full_ones[None])[0]
    with pytest.raises(ValueError, match="leaves"):
        box_mask_to_rle(np.ones((3, 3), bool), w - 2, 0, h, w)


def test_instances_index_box_masks_like_tensors():
    gen = torch.Generator().manual_seed(3)
    n, h, w = 6, 40, 50
    probs = torch.rand(n, 14, 14, generator=gen)
    boxes = _boxes(n, h, w, gen).clamp(min=0)
    local = paste_masks(probs, boxes, (h, w), box_local=True)
    full = local.full()
    inst = Instances((h, w), boxes, torch.rand(n), torch.zeros(n, dtype=torch.int64), local)
    for idx in (torch.tensor([True, False, True, True, False, True]), torch.tensor([4, 0]), slice(1, 4), 2):
        sub = inst[idx]
        want = full[idx] if not isinstance(idx, int) else full[idx:idx + 1]
        assert isinstance(sub.pred_masks, BoxMasks) and torch.equal(sub.pred_masks.full(), want)
    with pytest.raises(ValueError, match="crop"):
        BoxMasks((h, w), torch.tensor([[0, 0, 5, 5]]), [torch.zeros(4, 5, dtype=torch.bool)])


@pytest.mark.parametrize("arch", ["yolact_tiny", "blendmask_tiny", "centermask_tiny"])
def test_predictor_cpu_masks_are_box_local_and_equal_full(arch):
    """The CPU predictor returns box-local masks; ``masks`` and ``to_rle`` give the same masks as
    the whole-image post-processing of the same outputs."""
    from segcore.modeling import build_model
    from segcore.modeling.registry import family_of
    from segcore.predictor import Predictor

    torch.manual_seed(0)
    model = build_model(arch, num_classes=2)
    pred = Predictor(model, [{"id": 1, "name": "a"}, {"id": 7, "name": "b"}], device="cpu", precision="fp32")
    image = np.random.default_rng(4).integers(0, 255, (150, 210, 3), dtype=np.uint8)
    out = pred.predict(image, score_threshold=0.0)
    assert out.box_masks is not None and len(out) > 0
    rles = out.to_rle()
    with torch.inference_mode():
        x, input_hw = pred.preprocess_batch([image])
        raw = pred.model(x, image_sizes=input_hw, score_threshold=0.0)
        raw = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in raw.items()}
        whole = family_of(pred.model).make_postprocess(pred.model)(raw, [image.shape[:2]], input_sizes=input_hw,
                                                                   score_threshold=0.0)[0]
    assert torch.is_tensor(whole.pred_masks)
    assert np.array_equal(out.masks, whole.pred_masks.numpy())
    assert [r["counts"] for r in rles] == _encode_full(whole.pred_masks.numpy())


_BIG_IMAGE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    from segcore.modeling import build_model
    from segcore.predictor import Predictor

    def status_mb(field):  # VmRSS now / VmHWM peak of this process image (ru_maxrss would
        with open("/proc/self/status") as f:  # inherit the forking parent's peak across exec)
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

    h, w = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    model = build_model("yolact_tiny", num_classes=1)
    with torch.no_grad():  # boxes = the priors: object-sized boxes, as a trained model's
        model.prediction_layers[0].bbox_layer.weight.zero_()
        model.prediction_layers[0].bbox_layer.bias.zero_()
    pred = Predictor(model, [{"id": 1, "name": "x"}], device="cpu", precision="fp32")
    pred.predict(np.zeros((64, 64, 3), np.uint8))
    base = status_mb("VmRSS")
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = pred.predict(image, score_threshold=0.0)
    rles = out.to_rle()
    peak = status_mb("VmHWM")
    print(json.dumps({"detections": len(out), "rles": len(rles), "base_mb": base, "peak_mb": peak,
                      "window_px": sum(int(c.numel()) for c in out.box_masks.crops)}))
""")


def test_big_image_peak_memory_follows_the_image_not_n_masks(tmp_path):
    """A 12 MP image with 100 detections: the predict + RLE peak stays within 12 bytes per image
    pixel (the uint8 image, one float32 channel during the resize, the masks' windows) + 100 MB,
    where whole-image masks alone would take 100 x 12 MP = 1.2 GB. README: 100 MP in < 2 GB."""
    h, w = 3000, 4000
    script = tmp_path / "big.py"
    script.write_text(_BIG_IMAGE_SCRIPT)
    res = subprocess.run([sys.executable, str(script), str(h), str(w)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    stats = json.loads(res.stdout.strip().splitlines()[-1])
    assert stats["detections"] == 100 and stats["rles"] == 100
    bound = 12 * h * w / 2**20 + 100
    assert bound < 100 * h * w / 2**20 / 2  # whole-image bool masks alone would take twice the bound
    assert stats["peak_mb"] - stats["base_mb"] < bound, stats
    print(stats)
