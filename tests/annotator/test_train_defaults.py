"""The fine-tuning job's default optimiser follows each family's official recipe (lr scaled
linearly with the batch) and reaches the engine."""

from __future__ import annotations

import pytest

from annotator.jobs.train import default_optim


@pytest.mark.parametrize("arch, batch, lr, wd", [
    ("yolact_r50_550", 8, 1e-3, 5e-4),          # yolact_base_config: lr 1e-3 at batch 8
    ("yolact_plus_r101_550", 4, 5e-4, 5e-4),
    ("blendmask_r50", 16, 0.01, 1e-4),          # Base-BlendMask.yaml: BASE_LR 0.01 at 16
    ("centermask_lite_v19", 4, 0.0025, 1e-4),   # Base-CenterMask-VoVNet.yaml: 0.01 at 16
])
def test_default_optim_per_family(arch, batch, lr, wd):
    got_lr, got_wd = default_optim(arch, batch)
    assert got_lr == pytest.approx(lr) and got_wd == wd


class _Stop(Exception):
    pass


def test_job_passes_the_family_defaults_to_the_engine(monkeypatch, tmp_path):
    import cv2
    import numpy as np
    import segcore.engine

    from annotator import masks
    from annotator.jobs.train import TrainSpec, run_train_job
    from annotator.project import Project

    assert TrainSpec.__dataclass_fields__["weight_decay"].default == 5e-4   # old spec files still load
    imgs = tmp_path / "images"
    imgs.mkdir()
    for i in range(3):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((64, 64, 3), 40 * i, np.uint8))
    seen = {}

    def fake_train(model, records, categories, **kw):
        seen.update(kw, arch=model.info.arch)
        raise _Stop

    monkeypatch.setattr(segcore.engine, "train", fake_train)
    with Project.create(tmp_path / "proj", images_dir=imgs) as p:
        p.add_category("thing")
        m = np.zeros((64, 64), bool)
        m[10:40, 10:40] = True
        for im in p.images():
            p.add_annotation(im.id, 1, rle=masks.encode_mask(m))
        for arch, lr, wd in (("blendmask_tiny", 0.01 * 2 / 16, 1e-4), ("yolact_tiny", 1e-3 * 2 / 8, 5e-4)):
            with pytest.raises(_Stop):
                run_train_job(p, arch=arch, iterations=2, batch_size=2, device="cpu", input_size=64,
                              log=lambda m: None)
            assert seen["arch"] == arch and seen["lr"] == pytest.approx(lr) and seen["weight_decay"] == wd
