"""Pre-labelling: run a segcore ``Predictor`` over project images and store its predictions.

Predictions land as source ``"model"``, review state ``"predicted"`` through
``Project.replace_predictions`` (replacing that image's previous predictions); human, accepted,
rejected and edited annotations are never touched.

The pipeline (:func:`prelabel`; the CLI and the app's "Pre-label all unreviewed" alike):

1. **Read** (:class:`PrelabelImages` in ``torch.utils.data.DataLoader`` workers,
   :func:`default_num_workers`): each file is decoded with its EXIF orientation
   (``segcore.data.read_image_rgb``), checked against the size stored in the project and resized
   for the network on the host (``Predictor.input_transform``), while the model runs on an
   earlier batch. A file that cannot be read comes back as an item carrying the reason.
2. **Predict** (the calling thread, :func:`predict_images`): one forward pass per batch of
   ``batch_size`` images (default 1 on CPU, where batching does not pay, and
   :data:`CUDA_BATCH_SIZE` on CUDA; a batch is also closed before its images exceed
   :data:`MAX_BATCH_PIXELS` original pixels in total, since the batch's full-resolution bool
   masks are assembled on the device before they are copied back).
3. **Encode** (one background thread): a batch's masks become COCO RLE rows while the next batch
   runs through the model.
4. **Write** (:class:`PrelabelWriter`, the calling thread: the one writer of the project): one
   transaction per :data:`WRITE_IMAGES` images, or per batch once :data:`WRITE_SECONDS` have
   passed since the last commit (so a slow CPU still commits image by image and a GPU run does
   not commit 50 times a second), at a stop and at the end.

Memory stays flat over the folder: the job holds one small tuple per image (id, path, size),
at most ``prefetch`` batches of resized inputs per DataLoader worker, two batches of predictions
and :data:`WRITE_IMAGES` images' RLE rows.

Progress and cancel: ``progress(done, total)`` is called after each image is predicted (or
found unreadable) and queued for writing; ``should_stop()`` is checked before each batch is
predicted, so a cancel takes effect within one batch, and everything reported by ``progress``
is committed before :func:`prelabel` returns (also after an error).

Folders as they are: an image that cannot be read (empty, truncated, deleted since the project
was made, changed to another size) is skipped, marked ``unreadable`` in the project (the image
list shows it) and listed in :attr:`PrelabelSummary.unreadable`; the run goes on with the rest.

``annotator prelabel --gpus N`` (:mod:`annotator.jobs.prelabel_worker`) runs stages 1-3 in each
of N torchrun processes on its shard of the same plan (:func:`plan_prelabel`) and gathers the
rows to one process, which alone runs stage 4.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from annotator import masks
from annotator.errors import AnnotatorError
from annotator.project.images import load_rgb
from annotator.project.records import REVIEWED_STATES

__all__ = ["PrelabelSummary", "PrelabelItem", "LoadedImage", "ImageResult", "PrelabelImages", "PrelabelWriter",
           "prelabel", "plan_prelabel", "predict_images", "prepare_workers", "category_mapping", "default_batch_size",
           "default_num_workers", "CUDA_BATCH_SIZE", "MAX_BATCH_PIXELS", "WRITE_IMAGES", "WRITE_SECONDS"]

#: Default images per forward pass on a CUDA predictor (``batch_size=None``).
CUDA_BATCH_SIZE = 8

#: A batch is closed before the sum of its images' H x W would exceed this (8 Full-HD frames);
#: an image larger than that on its own still forms a batch of one.
MAX_BATCH_PIXELS = 8 * 1920 * 1080

#: At most this many images' results per write transaction.
WRITE_IMAGES = 64

#: A transaction is committed after the batch that comes this many seconds (or more) after the
#: previous commit, however few images it holds.
WRITE_SECONDS = 1.0

#: Jobs with fewer images than this read their files in the calling process (``num_workers=0``):
#: starting a worker process costs more than it overlaps.
MIN_IMAGES_FOR_WORKERS = 4

#: A CPU run reads in a worker process only on a CPU with at least this many logical cores. On 2
#: cores the reader takes time from the model's threads: 80 coco-tiny images with
#: ``yolact_r50_550`` took 17.4-20.2 s with one reader process and 15.7-17.3 s reading in the
#: calling process (3 pairs in one process); reading is about 1 % of a forward pass there.
CPU_CORES_FOR_WORKERS = 4


@dataclass(frozen=True)
class PrelabelSummary:
    """``images`` predicted, ``instances`` stored, ``skipped`` (in progress or done), ``stopped``
    early, ``unreadable``: ``"<file>: <reason>"`` of the images that could not be read."""

    images: int
    instances: int
    skipped: int
    stopped: bool = False
    unreadable: tuple[str, ...] = ()


class PrelabelItem(NamedTuple):
    """One image to predict: project ``image_id``, absolute ``path`` (str) and the ``height`` /
    ``width`` stored in the project (px)."""

    image_id: int
    path: str
    height: int
    width: int


class LoadedImage(NamedTuple):
    """What a :class:`PrelabelImages` worker returns for one image.

    Attributes:
        image_id: project image id.
        size: original ``(H, W)`` px.
        data: the network input ``[3, h, w]`` uint8 CPU tensor (with a transform), else the decoded
            ``[H, W, 3]`` uint8 RGB array; None when unreadable.
        error: why the file could not be used (one line), else None.
    """

    image_id: int
    size: tuple[int, int]
    data: Any
    error: Optional[str]


class ImageResult(NamedTuple):
    """One image's predictions, ready to store.

    Attributes:
        image_id: project image id.
        rows: ``({"category_id": checkpoint COCO id, "rle": compressed RLE (counts str, the
            image's size), "score": float in [0, 1]}, ...)`` without empty masks; None when
            unreadable.
        error: why the file could not be used (one line), else None.
    """

    image_id: int
    rows: Optional[tuple[dict, ...]]
    error: Optional[str]


def category_mapping(project, checkpoint_categories: list[dict]) -> dict[int, int]:
    """Map the checkpoint's COCO category ids to project category ids, creating missing ones.

    Same id and name -> that category; id unknown to the project -> created with the
    checkpoint's id and name (or, if the name exists under another id, that category);
    same id with another name -> the project category of that name if there is one.

    Raises:
        AnnotatorError: a checkpoint category clashes with the project's (same id, other
            name, and no project category carries the checkpoint's name).
    """
    mapping: dict[int, int] = {}
    with project.transaction():
        for cat in checkpoint_categories:
            cid, name = int(cat["id"]), str(cat["name"])
            by_id = {c.id: c for c in project.categories()}
            by_name = {c.name: c for c in by_id.values()}
            if cid in by_id and by_id[cid].name == name:
                mapping[cid] = cid
            elif name in by_name:
                mapping[cid] = by_name[name].id
            elif cid not in by_id:
                mapping[cid] = project.add_category(name, id=cid).id
            else:
                raise AnnotatorError(
                    f"{project.db_path}: categories.name: the model's category {cid} is {name!r} but the "
                    f"project's category {cid} is {by_id[cid].name!r} and no project category is named "
                    f"{name!r}; rename or add the category first")
    return mapping


def default_batch_size(predictor) -> int:
    """Images per forward pass when ``prelabel(batch_size=None)``: :data:`CUDA_BATCH_SIZE` for a
    predictor with ``predict_batch`` whose ``device`` is CUDA, else 1."""
    if hasattr(predictor, "predict_batch") and _device_type(predictor) == "cuda":
        return CUDA_BATCH_SIZE
    return 1


def default_num_workers(predictor, n_images: int) -> int:
    """DataLoader worker processes when ``num_workers=None``: 0 (read in this process) for fewer
    than :data:`MIN_IMAGES_FOR_WORKERS` images; on CUDA ``min(4, CPU cores - 1)`` (reading and
    resizing then take about as long as a batched forward); on the CPU 1 (reading is a few
    per cent of a forward pass, and the model uses the cores) from :data:`CPU_CORES_FOR_WORKERS`
    logical cores, else 0."""
    if n_images < MIN_IMAGES_FOR_WORKERS:
        return 0
    if _device_type(predictor) == "cuda":
        return max(1, min(4, (os.cpu_count() or 2) - 1))
    return 1 if (os.cpu_count() or 1) >= CPU_CORES_FOR_WORKERS else 0


def _device_type(predictor) -> str:
    device = getattr(predictor, "device", None)
    return str(getattr(device, "type", device))


def plan_prelabel(project, image_ids: Optional[Iterable[int]] = None, *,
                  only_unreviewed: bool = True) -> tuple[list[PrelabelItem], int]:
    """The images a run predicts, in id order (``image_ids`` order when given).

    Args:
        image_ids: None = every image of the project.
        only_unreviewed: leave out images a person has worked on (states ``in_progress`` and
            ``done``, :data:`annotator.project.records.REVIEWED_STATES`).

    Returns:
        ``(items, skipped)``: one :class:`PrelabelItem` per image to predict, and the number left
        out as reviewed.

    Raises:
        AnnotatorError: an unknown image id.
    """
    records = project.images() if image_ids is None else [project.image(int(i)) for i in image_ids]
    items, skipped = [], 0
    for rec in records:
        if only_unreviewed and rec.state in REVIEWED_STATES:
            skipped += 1
        else:
            items.append(PrelabelItem(int(rec.id), str(project.abs_path(rec.file_name)), int(rec.height),
                                      int(rec.width)))
    return items, skipped


class PrelabelImages(Dataset):
    """Map-style dataset over :class:`PrelabelItem` s for ``torch.utils.data.DataLoader`` workers.

    Args:
        items: the images, in order.
        transform: ``[H, W, 3]`` uint8 RGB -> network input (``Predictor.input_transform()``,
            picklable), or None to return the decoded image itself.

    ``dataset[k]`` is a :class:`LoadedImage`; it never raises for a file that cannot be used
    (missing, not an image, decoded size different from the project's): ``error`` says why.
    """

    def __init__(self, items: Sequence[PrelabelItem], transform: Optional[Callable[[np.ndarray], Any]] = None):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> LoadedImage:
        image_id, path, height, width = self.items[index]
        size = (int(height), int(width))
        try:
            image = load_rgb(path)
        except AnnotatorError as exc:
            return LoadedImage(image_id, size, None, str(exc).split(": cannot read image: ", 1)[-1])
        if image.shape[:2] != size:
            return LoadedImage(image_id, size, None, f"changed on disk: now {image.shape[1]} x {image.shape[0]} px, "
                                                     f"the project has {width} x {height}")
        return LoadedImage(image_id, size, image if self.transform is None else self.transform(image), None)


def _batches(items: Sequence[PrelabelItem], batch_size: int) -> list[list[int]]:
    """Split ``range(len(items))`` in order into lists of at most ``batch_size`` indices and (except
    for a single image) at most :data:`MAX_BATCH_PIXELS` original pixels."""
    if batch_size == 1:
        return [[k] for k in range(len(items))]
    out: list[list[int]] = []
    current: list[int] = []
    pixels = 0
    for k, item in enumerate(items):
        n = int(item.width) * int(item.height)
        if current and (len(current) >= batch_size or pixels + n > MAX_BATCH_PIXELS):
            out.append(current)
            current, pixels = [], 0
        current.append(k)
        pixels += n
    if current:
        out.append(current)
    return out


def _worker_context():
    """The ``multiprocessing`` context of the DataLoader workers: ``forkserver`` where the platform
    has it (a server process that imported this module once forks each worker; about 0.05 s a
    worker after the first), else ``spawn``. Not ``fork``: a fork of a process whose OpenCV
    thread pool or Qt threads are busy can deadlock the child (OpenCV's pool is reset there)."""
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")


def prepare_workers(n_images: Optional[int] = None, device: Optional[str] = None) -> None:
    """Start the DataLoader workers' fork server now, in the background (it imports torch, OpenCV
    and this module once, about 2 s on a laptop CPU), so that it is ready when the first job's
    workers start; call it before loading the model. Does nothing for a job of ``n_images`` <
    :data:`MIN_IMAGES_FOR_WORKERS` (read in-process), for a CPU run (``device`` ``"cpu"``, or
    None / ``"auto"`` without CUDA) on fewer than :data:`CPU_CORES_FOR_WORKERS` cores (read
    in-process, :func:`default_num_workers`) or where workers are spawned; safe to call again."""
    if n_images is not None and n_images < MIN_IMAGES_FOR_WORKERS:
        return
    if (os.cpu_count() or 1) < CPU_CORES_FOR_WORKERS:
        import torch

        on_cpu = device == "cpu" or (device in (None, "auto") and not torch.cuda.is_available())
        if on_cpu:
            return
    ctx = _worker_context()
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _forward(predictor, images: list[LoadedImage], score_threshold: float, preprocessed: bool) -> list:
    """One forward pass over a batch of readable images (their ``Prediction`` s, in order)."""
    if not images:
        return []
    if preprocessed:
        with torch.inference_mode():
            x, input_hw = predictor.batch_inputs([im.data for im in images])
            return predictor.predict_preprocessed(x, [im.size for im in images], input_hw,
                                                  score_threshold=score_threshold)
    if len(images) > 1:
        return predictor.predict_batch([im.data for im in images], score_threshold=score_threshold)
    return [predictor.predict(images[0].data, score_threshold=score_threshold)]


def _rles(prediction) -> list[dict]:
    if hasattr(prediction, "to_rle"):
        return [masks.counts_to_str(r) for r in prediction.to_rle()]
    return [masks.encode_mask(m) for m in np.asarray(prediction.masks)]


def _encode(batch: list[LoadedImage], predictions: list) -> list[ImageResult]:
    """A batch's items (readable ones with their ``Prediction``, in order) -> :class:`ImageResult` s."""
    preds = iter(predictions)
    out = []
    for item in batch:
        if item.error is not None:
            out.append(ImageResult(item.image_id, None, item.error))
            continue
        pred = next(preds)
        rows = []
        for rle, score, cid in zip(_rles(pred), np.asarray(pred.scores), np.asarray(pred.category_ids)):
            if masks.rle_area(rle) == 0:
                continue
            rows.append({"category_id": int(cid), "rle": rle, "score": float(min(max(float(score), 0.0), 1.0))})
        out.append(ImageResult(item.image_id, tuple(rows), None))
    return out


def predict_images(predictor, items: Sequence[PrelabelItem], *, score_threshold: float = 0.05,
                   batch_size: Optional[int] = None, num_workers: Optional[int] = None,
                   should_stop: Optional[Callable[[], bool]] = None) -> Iterator[ImageResult]:
    """Stages 1-3 of the pipeline (module docstring): yield one :class:`ImageResult` per item, in
    order, until the items are done or ``should_stop()`` (checked before each batch) is true.

    The predictor is used as ``predictor.input_transform()`` (in the DataLoader workers),
    ``predictor.batch_inputs`` and ``predictor.predict_preprocessed`` when it has all three
    (``segcore.predictor.Predictor``); otherwise the workers return the decoded ``[H, W, 3]``
    uint8 RGB image and a batch of several images goes to ``predictor.predict_batch(images,
    score_threshold=...)`` when it has it, one image to ``predictor.predict(image,
    score_threshold=...)``. A ``Prediction`` has ``scores`` ``[N]``, ``category_ids`` ``[N]`` (the
    checkpoint's COCO ids) and masks (``to_rle()``, compressed RLE at the image's size, or
    ``masks`` ``[N, H, W]`` bool).

    Args:
        items: from :func:`plan_prelabel` (or a shard of it).
        batch_size: images per forward pass; None = :func:`default_batch_size` (1 on CPU, 8 on
            CUDA). Predictors with neither ``predict_batch`` nor ``batch_inputs`` run one image
            at a time. Results do not depend on it beyond floating-point noise of batched
            kernels (and, for the short-side families, the shared padding of a batch; see
            ``segcore.predictor``).
        num_workers: DataLoader worker processes; None = :func:`default_num_workers`.

    Returns:
        An iterator (a generator: closing it, or leaving it unfinished, stops the workers).

    Raises:
        ValueError: ``batch_size`` < 1 or ``num_workers`` < 0 (at the call, before any work).
    """
    if batch_size is None:
        batch_size = default_batch_size(predictor)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    preprocessed = all(hasattr(predictor, a) for a in ("input_transform", "batch_inputs", "predict_preprocessed"))
    if not preprocessed and not hasattr(predictor, "predict_batch"):
        batch_size = 1
    workers = default_num_workers(predictor, len(items)) if num_workers is None else int(num_workers)
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {workers}")
    dataset = PrelabelImages(items, predictor.input_transform() if preprocessed and items else None)
    loader = DataLoader(dataset, batch_sampler=_batches(items, batch_size), collate_fn=list, num_workers=workers,
                        prefetch_factor=2 if workers else None,
                        multiprocessing_context=_worker_context() if workers else None)
    return _pipeline(predictor, loader, float(score_threshold), preprocessed, should_stop)


def _pipeline(predictor, loader: DataLoader, score_threshold: float, preprocessed: bool,
              should_stop: Optional[Callable[[], bool]]) -> Iterator[ImageResult]:
    """The generator behind :func:`predict_images`: forward in this thread, encoding in another."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prelabel-encode")
    pending: deque = deque()
    batches = iter(loader)
    try:
        while not (should_stop is not None and should_stop()):
            batch = next(batches, None)
            if batch is None:
                break
            preds = _forward(predictor, [im for im in batch if im.error is None], score_threshold, preprocessed)
            pending.append(pool.submit(_encode, batch, preds))
            del batch, preds
            # at most one batch is encoded while the next one runs through the model
            while len(pending) > 1 or (pending and pending[0].done()):
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)
        del batches  # shuts the DataLoader workers down


class PrelabelWriter:
    """The one writer of a pre-label run (stage 4 of the pipeline, module docstring).

    Args:
        project: the ``Project`` (or a wrapper with the same methods, e.g. the GUI's
            ``RecordingProject``), used only from the calling thread.
        mapping: checkpoint COCO category id -> project category id (:func:`category_mapping`).
        model_version: stored with each prediction (None for a plain checkpoint file).
        total: images the run will report (the ``total`` of ``progress``).
        progress: ``progress(done, total)`` after each :meth:`add`.
        write_images, write_seconds: commit when this many images wait, or at the first
            :meth:`add` this many seconds after the previous commit (None: :data:`WRITE_IMAGES`,
            :data:`WRITE_SECONDS`; ``write_images=1`` writes image by image).

    Attributes:
        done (images added), images (predicted and committed), instances (committed),
        unreadable (``"<file>: <reason>"`` committed as unreadable).
    """

    def __init__(self, project, mapping: dict[int, int], model_version: Optional[int], *, total: int,
                 progress: Optional[Callable[[int, int], None]] = None, write_images: Optional[int] = None,
                 write_seconds: Optional[float] = None):
        self.project, self.mapping, self.model_version = project, mapping, model_version
        self.total, self.progress = int(total), progress
        self.write_images = max(1, int(WRITE_IMAGES if write_images is None else write_images))
        self.write_seconds = float(WRITE_SECONDS if write_seconds is None else write_seconds)
        self.done = self.images = self.instances = 0
        self.unreadable: list[str] = []
        self.seen: set[int] = set()
        self._queue: list[ImageResult] = []
        self._last_commit = time.monotonic()

    def add(self, result: ImageResult) -> None:
        """Queue one image's result (commits when due), then report progress.

        Raises:
            AnnotatorError: the model predicted a category missing from its own list (names the
                project file and the field), or an image came twice in one run.
        """
        if result.image_id in self.seen:
            raise AnnotatorError(f"{self.project.db_path}: images.id: image {result.image_id} was predicted twice "
                                 "in one run")
        rows = None
        if result.rows is not None:
            rows = []
            for row in result.rows:
                cid = int(row["category_id"])
                if cid not in self.mapping:
                    raise AnnotatorError(f"{self.project.db_path}: category_ids: the model predicted category {cid} "
                                         "missing from its own categories list")
                rows.append(dict(row, category_id=self.mapping[cid]))
        self.seen.add(result.image_id)
        self._queue.append(ImageResult(result.image_id, None if rows is None else tuple(rows), result.error))
        self.done += 1
        if len(self._queue) >= self.write_images or time.monotonic() - self._last_commit >= self.write_seconds:
            self.flush()
        if self.progress is not None:
            self.progress(self.done, self.total)

    def flush(self) -> None:
        """Commit the queued results in one transaction: predictions replace each image's
        ``predicted`` annotations (``replace_predictions``) and clear an unreadable mark; an
        unreadable image is marked (``mark_unreadable``). Nothing is committed if it raises."""
        if not self._queue:
            return
        p = self.project
        images = instances = 0
        unreadable = []
        with p.transaction():
            for image_id, rows, error in self._queue:
                if error is not None:
                    p.mark_unreadable(image_id, error)
                    unreadable.append(f"{p.image(image_id).file_name}: {error}")
                else:
                    instances += p.replace_predictions(image_id, list(rows), self.model_version)
                    p.mark_readable(image_id)
                    images += 1
        self._queue.clear()
        self._last_commit = time.monotonic()
        self.images += images
        self.instances += instances
        self.unreadable.extend(unreadable)

    def summary(self, *, skipped: int, stopped: bool) -> PrelabelSummary:
        """The run's :class:`PrelabelSummary` (of what is committed)."""
        return PrelabelSummary(images=self.images, instances=self.instances, skipped=skipped, stopped=stopped,
                               unreadable=tuple(self.unreadable))


def prelabel(project, predictor, image_ids: Optional[Iterable[int]] = None, *, score_threshold: float = 0.05,
             only_unreviewed: bool = True, model_version: Optional[int] = None,
             progress: Optional[Callable[[int, int], None]] = None,
             should_stop: Optional[Callable[[], bool]] = None,
             batch_size: Optional[int] = None, num_workers: Optional[int] = None,
             write_images: Optional[int] = None, write_seconds: Optional[float] = None) -> PrelabelSummary:
    """Predict every image (default: all; ``only_unreviewed`` skips images a person has worked on:
    states ``in_progress`` and ``done``, :data:`annotator.project.records.REVIEWED_STATES`) and
    store the predictions, through the pipeline of the module docstring.

    Each image is read as ``[H, W, 3]`` uint8 RGB (EXIF orientation applied) and predicted
    (:func:`predict_images`: the predictor interface, ``batch_size``, ``num_workers``); category
    ids are mapped with :func:`category_mapping` using ``predictor.categories``; empty masks are
    dropped; results are written by a :class:`PrelabelWriter` (``write_images``,
    ``write_seconds``). ``progress(done, total)`` after each image; ``should_stop()`` before each
    batch (a stop commits what was reported). An image that cannot be read, or whose stored size
    no longer matches its file, is skipped and marked unreadable (module docstring).

    Raises:
        AnnotatorError: category clash, or the model predicts a category it does not list (the
            images reported before it are stored).
        ValueError: ``batch_size`` < 1 or ``num_workers`` < 0.
    """
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items, skipped = plan_prelabel(project, image_ids, only_unreviewed=only_unreviewed)
    mapping = category_mapping(project, list(predictor.categories)) if items else {}
    writer = PrelabelWriter(project, mapping, model_version, total=len(items), progress=progress,
                            write_images=write_images, write_seconds=write_seconds)
    try:
        for result in predict_images(predictor, items, score_threshold=score_threshold, batch_size=batch_size,
                                     num_workers=num_workers, should_stop=should_stop):
            writer.add(result)
    finally:
        writer.flush()
    return writer.summary(skipped=skipped, stopped=writer.done < len(items))
