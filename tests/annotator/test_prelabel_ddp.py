"""``annotator prelabel --gpus 2`` on the CPU: torchrun + gloo, 2 processes, one model each, rows
gathered to the one writer. The same predictions as one process, no image twice, none missed.
Each torchrun run takes 10-20 s on the 2-core machine (7 small images, random-init yolact_tiny)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import pytest

from annotator.cli import main
from annotator.errors import AnnotatorError
from annotator.jobs.distributed import TorchrunNodes, launch_prelabel, torchrun_command
from annotator.project import Project

N = 7   # odd: the two shards differ in length
CATS = [{"id": 1, "name": "thing"}, {"id": 2, "name": "stuff"}]


@pytest.fixture(scope="module")
def data(tmp_path_factory, coco_tiny) -> Path:
    """``images/``: N coco-tiny val images at a quarter size (one unreadable: ``03.jpg``);
    ``tiny.pth``: a random-init yolact_tiny at input 96."""
    import torch

    from segcore.checkpoints import save_checkpoint
    from segcore.modeling.registry import build_model

    root = tmp_path_factory.mktemp("prelabel_ddp")
    (root / "images").mkdir()
    for k, src in enumerate(sorted((coco_tiny / "val2017").glob("*.jpg"))[:N]):
        img = cv2.imread(str(src))
        cv2.imwrite(str(root / "images" / f"{k:02d}.jpg"), cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4)))
    torch.manual_seed(0)
    save_checkpoint(root / "tiny.pth", build_model("yolact_tiny", num_classes=2, input_size=96), categories=CATS)
    return root


def _project(data: Path, name: str) -> Path:
    folder = data / name
    shutil.rmtree(folder, ignore_errors=True)
    with Project.create(folder, images_dir=data / "images"):
        pass
    return folder


def _rows(folder: Path) -> dict:
    """Per image file: its state and its annotations (every column but ids and timestamps)."""
    with Project.open(folder) as p:
        return {p.image(i).file_name: (p.image_state(i), [(a.category_id, a.rle, a.score, a.bbox, a.area, a.source,
                                                           a.review_state) for a in p.annotations(i)])
                for i in p.image_ids()}


def test_two_processes_store_the_single_process_predictions(data):
    import torch

    from annotator.jobs.prelabel import prelabel
    from segcore.predictor import Predictor

    single, multi = _project(data, "single"), _project(data, "multi")
    broken = data / "images" / "03.jpg"   # made unreadable after both projects registered it
    good = broken.read_bytes()
    broken.write_bytes(b"not an image")
    try:
        # the reference: one process at the thread count each torchrun process gets
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
        try:
            with Project.open(single) as p:
                ref = prelabel(p, Predictor.from_checkpoint(data / "tiny.pth", device="cpu", precision="fp32"),
                               score_threshold=0.0)
        finally:
            torch.set_num_threads(threads)
        seen = []
        # the precision explicitly: the torchrun processes do not see tests/conftest.py's fp32 pin
        out = launch_prelabel(multi, data / "tiny.pth", nproc=2, device="cpu", precision="fp32", score_threshold=0.0,
                              chunk=2, progress=seen.append)
    finally:
        broken.write_bytes(good)
    assert out.summary == ref and ref.images == N - 1 and ref.instances > 0
    assert len(ref.unreadable) == 1 and "03.jpg: not a valid image" in ref.unreadable[0]
    assert _rows(multi) == _rows(single)   # same RLEs, scores, categories, states for every image
    ranks = out.ranks
    assert [r["rank"] for r in ranks] == [0, 1] and len({r["pid"] for r in ranks} | {os.getpid()}) == 3
    with Project.open(multi) as p:
        ids = p.image_ids()
    done = [i for r in ranks for i in r["images"]]
    assert sorted(done) == sorted(ids) and len(done) == len(set(done)) == N   # none twice, none missed
    assert all(r["images"] for r in ranks)                                     # both processes worked
    assert seen[-1] == {"done": N, "total": N} and len(seen) == 2              # ceil(ceil(7 / 2) / 2) gathers


def test_a_category_clash_is_one_line_and_changes_nothing(data):
    folder = _project(data, "clash")
    with Project.open(folder) as p:
        p.add_category("vehicle", id=1)   # the model's category 1 is "thing": no project category of that name
    with pytest.raises(AnnotatorError, match=r"categories\.name: the model's category 1 is 'thing'") as exc:
        launch_prelabel(folder, data / "tiny.pth", nproc=2, device="cpu")
    assert "\n" not in str(exc.value)
    with Project.open(folder) as p:
        assert p.annotations() == [] and [c.name for c in p.categories()] == ["vehicle"]


def test_cluster_options_reach_torchrun_and_bad_ones_are_one_line(tmp_path, capsys, data):
    nodes = TorchrunNodes(nnodes=2, node_rank=1, rdzv_endpoint="gpu0:29500")
    nodes.check()
    cmd = torchrun_command(tmp_path / "spec.json", 4, module="annotator.jobs.prelabel_worker", nodes=nodes)
    assert cmd[1:] == ["-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "1", "--rdzv-backend", "static",
                       "--rdzv-endpoint", "gpu0:29500", "--nproc_per_node", "4", "-m", "annotator.jobs.prelabel_worker",
                       str(tmp_path / "spec.json")]
    assert torchrun_command(tmp_path / "s.json", 2)[3:6] == ["--standalone", "--nnodes", "1"]
    folder = _project(data, "options")
    for extra, message in ((["--nnodes", "2"], "--rdzv-endpoint: needed with --nnodes > 1"),
                           (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "h:1"], "--node-rank: must be in"),
                           (["--nnodes", "2", "--rdzv-endpoint", "nohost"], "is not HOST:PORT"),
                           (["--gpus", "0"], "--gpus: must be >= 1")):
        assert main(["prelabel", str(folder), "--model", str(data / "tiny.pth"), "--device", "cpu", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
