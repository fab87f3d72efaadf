"""The SPAL run (SPEC section 1): the one place where the pieces are wired into the epoch loop.

Per epoch: k-reciprocal Jaccard distance of the instance memory -> constrained DBSCAN -> dual uncertainty
selection of support pairs (asked of the oracle while the budget lasts) -> pseudo labels -> ``iters`` training
steps with the contrastive and support-pair losses -> evaluation every ``eval_step`` epochs -> an atomic checkpoint.

:func:`run_training` names the steps: open the run (checks, logs dir, seed, weights), build the learner (model,
optimiser, budget, constraint graph), restore it from a checkpoint, initialise the memory, then per epoch
(:func:`_run_epoch`) the label phase, the training steps, the evaluation and record, the checkpoint; finish.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spal import datasets, models
from spal.active import AnnotationLog, Budget, ConstraintGraph, parse_budget
from spal.active.selector import GroundTruthSelect, PairSelector
from spal.clustering import cluster_statistics, constrained_dbscan, jaccard_distance, neighbour_table
from spal.data import TrainAugment, iterate_tensor_batches, load_images, make_eval_loader, verify_images
from spal.distributed import (
    DistContext,
    all_gather_cat,
    average_buffers,
    barrier,
    broadcast_object,
    init_distributed,
)
from spal.engine.checkpoint import BackgroundCheckpointer, atomic_write_text, load_checkpoint, remove_stale_temps
from spal.engine.config import RESUMABLE_KEYS, TrainConfig, resolve_precision, upgrade_saved_settings
from spal.engine.trainer import EpochTargets, StepSettings, TrainImages, train_epoch
from spal.evaluation import evaluate, extract_features
from spal.losses import InstanceMemory

__all__ = [
    "run_training",
    "check_run_inputs",
    "RUN_FILES",
    "load_dataset",
    "evaluate_on_test",
    "EvalImages",
    "cluster",
    "pseudo_labels_from_clusters",
    "CHECKPOINT_NAME",
    "PHASES",
    "LabelPhaseResult",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pth"
PHASES = ("extract", "distance", "cluster", "select", "train", "evaluate")
# Images a forward pass in CUDA extraction: large enough to keep a large GPU busy. The CPU path keeps its 128.
_CUDA_EXTRACT_BATCH = 256
#: What a run leaves in its logs dir that a new run there would mix with (answers, weights, numbers).
RUN_FILES = (CHECKPOINT_NAME, "annotations.jsonl", "metrics.jsonl", "final.json", "annotation")


def load_dataset(cfg: TrainConfig) -> datasets.ReIDDataset:
    """Open the data set that ``cfg`` names; ``synthetic`` is generated under ``data_dir`` first if absent.

    With ``cfg.synthetic`` (generator arguments) an existing tree under ``data_dir`` is reused as it is, so the
    harness gives every synthetic size its own ``data_dir``.
    """
    if cfg.dataset == "synthetic":
        from spal.datasets import synthetic

        if cfg.synthetic:
            try:
                root = synthetic.generate(cfg.data_dir, layout=cfg.synthetic_layout, **cfg.synthetic)
            except FileExistsError:
                root = Path(cfg.data_dir).resolve()
        else:
            root = synthetic.ensure(cfg.data_dir, layout=cfg.synthetic_layout)
        return datasets.create(cfg.synthetic_layout, root)
    return datasets.create(cfg.dataset, cfg.data_dir)


def check_run_inputs(
    cfg: TrainConfig, *, resume: bool = False, resume_from: str | None = None, progress: bool = True
) -> datasets.ReIDDataset:
    """Check everything a run reads before it writes anything; returns the loaded data set.

    In order: the logs dir (a fresh run in one that holds a run's files is refused), the checkpoint to resume
    (readable, and stored with the same settings but for :data:`spal.engine.config.RESUMABLE_KEYS`), the data
    set's tree and, unless the run is already complete, every image of train, query and gallery (header and
    decode, in parallel threads).

    Raises:
        ValueError: a used logs dir, or settings that differ from the checkpoint's (all listed on one line);
            CheckpointError (a ValueError) for an unreadable checkpoint. FileNotFoundError: no checkpoint at
            ``resume_from``. DatasetError: a missing or malformed tree. ImageLoadError: the first bad image.
    """
    logs_dir = Path(cfg.logs_dir)
    source = Path(resume_from) if resume_from else logs_dir / CHECKPOINT_NAME
    finished = False
    if resume_from or (resume and source.is_file()):
        ckpt = load_checkpoint(source, mmap=True)
        differences = cfg.resume_differences(ckpt["config"])
        if differences:
            raise ValueError(
                f"cannot resume {source} with other settings: {', '.join(differences)}; only "
                f"{', '.join(RESUMABLE_KEYS)} may change on --resume (start a new run in a new --logs-dir)"
            )
        finished = ckpt["epoch"] + 1 >= cfg.epochs
    elif not resume:
        used = [name for name in RUN_FILES if (logs_dir / name).exists()]
        if used:
            raise ValueError(
                f"--logs-dir {logs_dir} already holds a run ({', '.join(used)}): continue it with --resume or "
                "choose a new --logs-dir"
            )
    data = load_dataset(cfg)
    if not finished:
        verify_images(data.train + data.query + data.gallery, desc="check images", progress=progress)
    return data


def pseudo_labels_from_clusters(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Turn DBSCAN labels into training classes: clusters keep their ids, every outlier becomes its own class.

    Args:
        labels: ``(n,)`` int64, ``-1`` for outliers, clusters numbered ``0..C-1``.

    Returns:
        ``(pseudo, num_classes)``: ``(n,)`` int64 in ``[0, num_classes)``.
    """
    pseudo = labels.astype(np.int64, copy=True)
    outliers = np.flatnonzero(pseudo < 0)
    num_clusters = int(pseudo.max()) + 1 if (pseudo >= 0).any() else 0
    pseudo[outliers] = num_clusters + np.arange(outliers.size)
    return pseudo, num_clusters + int(outliers.size)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class _RunState:
    """A run's progress, stored in every checkpoint: the next epoch, the records, the time spent by phase."""

    start_epoch: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    phase_totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    wall_time: float = 0.0


def _percent(result: dict[str, float]) -> dict[str, float]:
    keys = [k for k in result if k == "mAP" or k == "mINP" or k.startswith("rank")]
    return {k: round(100.0 * float(result[k]), 4) for k in keys}


class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> _Timer:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.start


class EvalImages:
    """Query and gallery decoded once a run, as ``(N, 3, H, W)`` uint8, for evaluation on one CUDA device.

    A subset is decoded the first time it is asked for and kept: on the device when it takes at most half of
    the device's free memory, otherwise in pinned host memory (copied to the device a batch at a time).
    """

    def __init__(self, data: datasets.ReIDDataset, cfg: TrainConfig, device: torch.device) -> None:
        self.data, self.cfg, self.device = data, cfg, device
        self.images: dict[str, torch.Tensor] = {}

    def get(self, subset: str) -> torch.Tensor:
        if subset not in self.images:
            images = load_images(
                self.data.subset(subset), self.cfg.height, self.cfg.width, workers=self.cfg.workers,
                desc=f"decode {subset}",
            )  # fmt: skip
            free, _ = torch.cuda.mem_get_info(self.device)
            self.images[subset] = images.to(self.device) if 2 * images.nbytes <= free else images.pin_memory()
        return self.images[subset]

    def features(self, model: torch.nn.Module, subset: str, precision: str) -> torch.Tensor:
        """``(N, D)`` float32 L2-normalised features of ``subset`` on the device, extracted in ``precision``."""
        batches = iterate_tensor_batches(self.get(subset), batch_size=_CUDA_EXTRACT_BATCH, device=self.device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return extract_features(model, batches, device=self.device, desc=f"extract {subset}", to_cpu=False)


def _extract_records(
    model: torch.nn.Module, records: list, cfg: TrainConfig, ctx: DistContext, desc: str
) -> torch.Tensor:
    """``(len(records), D)`` features; with several processes each extracts a contiguous share, then all gather."""
    if not ctx.distributed:
        loader = make_eval_loader(records, cfg.height, cfg.width, batch_size=128, workers=cfg.workers)
        return extract_features(model, loader, device=ctx.device, desc=desc)
    share = -(-len(records) // ctx.world_size)
    mine = records[ctx.rank * share : (ctx.rank + 1) * share]
    padded = torch.zeros(share, model.feature_dim, device=ctx.device)
    if mine:
        loader = make_eval_loader(mine, cfg.height, cfg.width, batch_size=128, workers=cfg.workers)
        padded[: len(mine)] = extract_features(model, loader, device=ctx.device, desc=desc).to(ctx.device)
    return all_gather_cat(padded, ctx)[: len(records)].cpu()


def evaluate_on_test(
    model: torch.nn.Module,
    data: datasets.ReIDDataset,
    cfg: TrainConfig,
    ctx: DistContext,
    eval_images: EvalImages | None = None,
) -> dict[str, float | int]:
    """mAP, mINP and CMC in percent (SPEC 3.6). Every rank extracts its share of query and gallery; rank 0
    computes the metrics (the other ranks return an empty dict).

    With ``eval_images`` (one process on CUDA) the images decoded once a run are extracted in the run's
    precision and ranked on the device; otherwise the files are decoded for this evaluation.
    """
    if eval_images is not None:
        precision = resolve_precision(cfg.precision, ctx.device.type)
        qf = eval_images.features(model, "query", precision)
        gf = eval_images.features(model, "gallery", precision)
    else:
        qf = _extract_records(model, data.query, cfg, ctx, "extract query")
        gf = _extract_records(model, data.gallery, cfg, ctx, "extract gallery")
    if not ctx.is_main:
        return {}
    result = evaluate(
        qf,
        gf,
        np.array([r[1] for r in data.query]),
        np.array([r[1] for r in data.gallery]),
        np.array([r[2] for r in data.query]),
        np.array([r[2] for r in data.gallery]),
    )
    return {**_percent(result), "num_valid_queries": int(result["num_valid_queries"])}


def run_training(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    resume_from: str | None = None,
    ctx: DistContext | None = None,
    human_select: PairSelector | None = None,
    data: datasets.ReIDDataset | None = None,
) -> dict[str, Any]:
    """Train SPAL as ``cfg`` says and return the final summary (also written to ``<logs_dir>/final.json``).

    Args:
        resume: continue from ``<logs_dir>/checkpoint.pth`` when it exists (a finished run is not re-trained);
            without it, a logs dir that holds a run is refused.
        resume_from: continue from this checkpoint instead (it must exist). On resume only the settings of
            :data:`spal.engine.config.RESUMABLE_KEYS` may differ from the checkpoint's; they are applied and
            stored in the next checkpoint.
        data: the data set as :func:`check_run_inputs` returned it for these arguments; ``None`` runs those
            checks here.
        ctx: the distributed context; ``None`` joins the one torchrun describes (or runs alone).
        human_select: for ``--oracle human``, the selector that offers the epoch's pairs to people and returns the
            answered ones (:class:`spal.annotation.HumanSelect`); ``None`` uses the ground-truth oracle.
    """
    run = _open_run(cfg, ctx or init_distributed(cfg.device), data, resume=resume, resume_from=resume_from)
    learner = _build_learner(run)
    checkpoint_path = run.logs_dir / CHECKPOINT_NAME
    progress = _RunState()
    if resume_from or (resume and checkpoint_path.is_file()):
        progress = _restore(run, learner, Path(resume_from) if resume_from else checkpoint_path)
    if progress.start_epoch >= cfg.epochs:
        # A finished run: nothing to decode or train, only its summary to restate.
        if run.ctx.is_main:
            log.info("the run in %s is complete (%d epochs); nothing to train", run.logs_dir, cfg.epochs)
        return _finish(run, learner, progress, elapsed=0.0)
    images = _init_memory(run, learner, progress)
    loop = _prepare_loop(run, learner, images, human_select)
    for epoch in range(progress.start_epoch, cfg.epochs):
        _run_epoch(run, learner, loop, progress, epoch)
    if loop.checkpointer is not None:
        loop.checkpointer.close()
    return _finish(run, learner, progress, elapsed=time.perf_counter() - run.started)


@dataclass
class _Run:
    """What every step of one run reads and none changes (made by :func:`_open_run`)."""

    cfg: TrainConfig
    ctx: DistContext
    data: datasets.ReIDDataset
    logs_dir: Path
    #: The resolved precision, ``"bf16"`` or ``"fp32"``.
    precision: str
    #: BatchNorm groups a process (SPEC 2).
    bn_groups: int
    #: The backbone's weight file; ``None`` for a random initialisation.
    weights: models.PretrainedWeights | None
    #: ``final.json``'s layout keys (see :func:`_summary`).
    layout: dict[str, Any]
    #: ``time.perf_counter()`` at the start: this process's share of the run's wall time.
    started: float


@dataclass
class _Learner:
    """What training changes and a checkpoint stores, besides the run's progress (:class:`_RunState`)."""

    #: The backbone; wrapped in DistributedDataParallel by :func:`_prepare_loop` when several processes train.
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    budget: Budget
    graph: ConstraintGraph
    #: ``(n, D)`` features of every training image; ``None`` until restored or initialised.
    memory: InstanceMemory | None = None


@dataclass
class _EpochLoop:
    """What the epochs use besides the learner, made once before the first (by :func:`_prepare_loop`)."""

    train: TrainImages
    steps: StepSettings
    select: PairSelector
    #: ``(n,)`` identities of the training images (the ground-truth oracle's answers, the cluster purity).
    pids: np.ndarray
    #: Rank 0's log of answers; ``None`` on the other ranks.
    annotation_log: AnnotationLog | None
    #: Query and gallery decoded once (one process on CUDA); ``None`` decodes them at each evaluation.
    eval_images: EvalImages | None
    #: Rank 0's background checkpoint writer; ``None`` on the other ranks.
    checkpointer: BackgroundCheckpointer | None


@dataclass
class LabelPhaseResult:
    """What rank 0's label phase of one epoch hands to every rank.

    Attributes:
        targets: pseudo labels ``(n,)``, their number of classes and the constraint graph's components and
            cannot-link edges, for training.
        stats: the clustering's statistics (``num_clusters``, ``num_outliers``, ``purity``, ...) and
            ``num_classes``, for the epoch's record.
        seconds: the phase's times by :data:`PHASES` key (``distance``, ``cluster``, ``select``).
    """

    targets: EpochTargets
    stats: dict[str, float | int]
    seconds: dict[str, float]


def _open_run(
    cfg: TrainConfig,
    ctx: DistContext,
    data: datasets.ReIDDataset | None,
    *,
    resume: bool,
    resume_from: str | None,
) -> _Run:
    """Check the inputs (unless ``data`` is given), prepare the logs dir, seed, and find the weights."""
    # Before any work: the BatchNorm layout (SPEC 2: groups of 16 images at every world size unless told).
    bn_groups = models.resolve_bn_groups(cfg.batch_size, ctx.world_size, cfg.bn_groups)
    bn_batch = cfg.batch_size // (ctx.world_size * bn_groups)
    if ctx.is_main:
        log.info("BatchNorm over %d images: %d group(s) on each of %d process(es)", bn_batch, bn_groups, ctx.world_size)
    if data is None:
        data = check_run_inputs(cfg, resume=resume, resume_from=resume_from, progress=ctx.is_main)
    logs_dir = Path(cfg.logs_dir)
    if ctx.is_main:
        logs_dir.mkdir(parents=True, exist_ok=True)
        # A kill during an atomic write leaves its temporary file (half a checkpoint); nothing writes here now.
        for stale in remove_stale_temps(logs_dir):
            log.info("removed %s, left by an interrupted write", stale)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    _seed_everything(cfg.seed)
    if ctx.is_main:
        data.log_summary()
    # The weights before anything is decoded or trained (SPEC 3.8: never a silent random initialisation); a file
    # that does not fit the backbone fails here too.
    weights = models.resolve_pretrained(cfg.arch, cfg.pretrained)
    if ctx.is_main:
        if weights is None:
            log.info("backbone %s: random initialisation (--pretrained %s)", cfg.arch, cfg.pretrained or "not given")
        else:
            log.info("backbone %s: weights %s (sha256 %s)", cfg.arch, weights.path, weights.sha256)
    precision = resolve_precision(cfg.precision, ctx.device.type)
    layout = {
        "world_size": ctx.world_size,
        "bn_batch": bn_batch,
        "pretrained": weights.name if weights else None,
        "pretrained_sha256": weights.sha256 if weights else None,
        "precision": precision,
    }
    return _Run(cfg, ctx, data, logs_dir, precision, bn_groups, weights, layout, started)


def _fused(device: torch.device) -> bool | None:
    """Adam's ``fused``: on CUDA one kernel updates every parameter; the CPU keeps the default (and its numbers)."""
    return True if device.type == "cuda" else None


def _build_learner(run: _Run) -> _Learner:
    """The backbone (seeded initialisation or the weight file), Adam, its step schedule, the budget and graph."""
    cfg, device = run.cfg, run.ctx.device
    weights = run.weights.path if run.weights else None
    model = models.create(cfg.arch, pretrained=weights, bn_groups=run.bn_groups).to(device)
    if device.type == "cuda":
        # cuDNN's fast convolution kernels (bf16 above all) want NHWC; the training batches are made to match.
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=_fused(device))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    n = len(run.data.train)
    budget = Budget(parse_budget(cfg.budget, n))
    graph = ConstraintGraph(n, propagation=cfg.propagation == "on")
    return _Learner(model, optimizer, scheduler, budget, graph)


def _restore(run: _Run, learner: _Learner, source: Path) -> _RunState:
    """Load the checkpoint at ``source`` into ``learner``; returns the progress it recorded."""
    ckpt = load_checkpoint(source, map_location=run.ctx.device)
    learner.model.load_state_dict(ckpt["model"])
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    for group in learner.optimizer.param_groups:
        # The saved groups carry the implementation of the machine that wrote them; this one's applies.
        group["fused"] = _fused(run.ctx.device)
    learner.scheduler.load_state_dict(ckpt["scheduler"])
    learner.memory = InstanceMemory(ckpt["memory"].to(run.ctx.device))
    learner.graph = ConstraintGraph.from_state_dict(ckpt["graph"])
    learner.budget.load_state_dict(ckpt["budget"])
    if run.ctx.is_main:
        log.info("resuming from %s after epoch %d", source, ckpt["epoch"])
        saved = upgrade_saved_settings(ckpt["config"])
        changed = [f"{k} {saved[k]!r} -> {v!r}" for k, v in run.cfg.to_dict().items() if k in saved and saved[k] != v]
        if changed:
            log.info("changed on resume (recorded in the next checkpoint): %s", ", ".join(changed))
    return _RunState(
        start_epoch=ckpt["epoch"] + 1,
        metrics=ckpt["metrics"],
        phase_totals=ckpt["phase_totals"],
        wall_time=ckpt["wall_time"],
    )


def _init_memory(run: _Run, learner: _Learner, progress: _RunState) -> torch.Tensor:
    """Decode the training set and, unless restored, fill the memory with its features (SPEC 1).

    Returns:
        ``(n, 3, H, W)`` uint8 training images: on the device on CUDA, else on the CPU.
    """
    cfg, device = run.cfg, run.ctx.device
    on_cuda = device.type == "cuda"
    with _Timer(device) as timer:
        images = load_images(run.data.train, cfg.height, cfg.width, workers=cfg.workers, desc="decode train")
        if on_cuda:
            images = images.to(device)
        if learner.memory is None:
            batches = iterate_tensor_batches(images, batch_size=_CUDA_EXTRACT_BATCH if on_cuda else 128, device=device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=run.precision == "bf16"):
                features = extract_features(learner.model, batches, device=device, desc="init memory")
                learner.memory = InstanceMemory(features.to(device))
    # A resumed run's extraction was counted by the run that made the memory.
    progress.phase_totals["extract"] += timer.seconds if progress.start_epoch == 0 else 0.0
    return images


def _prepare_loop(run: _Run, learner: _Learner, images: torch.Tensor, human_select: PairSelector | None) -> _EpochLoop:
    """The augmentation, the selector, the evaluation images, the checkpoint writer; DDP wraps the model."""
    cfg, ctx = run.cfg, run.ctx
    pids = run.data.pids("train")
    annotation_log = AnnotationLog(run.logs_dir / "annotations.jsonl") if ctx.is_main else None
    # The paper pads 10 pixels at 128 wide; smaller CPU images get the same relative shift.
    # On the training device, so that its constants are not copied there every batch.
    augment = TrainAugment(cfg.height, cfg.width, pad=max(1, round(10 * cfg.width / 128))).to(ctx.device)
    # One process on CUDA: query and gallery decoded once, at the first evaluation, and kept.
    on_cuda = ctx.device.type == "cuda"
    eval_images = EvalImages(run.data, cfg, ctx.device) if on_cuda and not ctx.distributed else None
    if ctx.distributed:
        # BatchNorm statistics are averaged after each epoch (average_buffers), not synced at every forward. torch
        # 2.14 names this forward_sync_buffers (broadcast_buffers is deprecated); the one sync it still does at
        # init copies rank 0's buffers, which every rank already holds (same seed or same checkpoint).
        learner.model = torch.nn.parallel.DistributedDataParallel(
            learner.model,
            device_ids=[ctx.device.index] if on_cuda else None,
            forward_sync_buffers=False,
        )
    return _EpochLoop(
        train=TrainImages(images, run.data.camids("train"), augment),
        steps=StepSettings.from_config(cfg, run.precision),
        select=human_select if human_select is not None else GroundTruthSelect(pids, cfg.selection, cfg.seed),
        pids=pids,
        annotation_log=annotation_log,
        eval_images=eval_images,
        # The write (serialisation, fsync) overlaps the next epoch; training waits only for the copy to the host.
        checkpointer=BackgroundCheckpointer() if ctx.is_main else None,
    )


def _run_epoch(run: _Run, learner: _Learner, loop: _EpochLoop, progress: _RunState, epoch: int) -> None:
    """One epoch: rank 0's label phase (broadcast), training, evaluation when due, the record and the checkpoint."""
    ctx = run.ctx
    _seed_everything(run.cfg.seed * 1000 + epoch)
    times = dict.fromkeys(PHASES, 0.0)
    spent_before = learner.budget.total - learner.budget.remaining
    phase = _label_phase(run, learner, loop, epoch) if ctx.is_main else None
    phase = broadcast_object(phase, ctx)
    if ctx.is_main:
        times.update(phase.seconds)
    losses, lr, times["train"] = _train(run, learner, loop, phase.targets, epoch)
    record: dict[str, Any] = {"epoch": epoch, **phase.stats, **losses, "lr": lr}
    record.update(
        queries_epoch=learner.budget.total - learner.budget.remaining - spent_before,
        queries_spent=learner.budget.total - learner.budget.remaining,
        budget=learner.budget.total,
        pairs_known=learner.graph.pairs_known(),
    )
    if (epoch + 1) % run.cfg.eval_step == 0 or epoch + 1 == run.cfg.epochs:
        with _Timer(ctx.device) as timer:
            record.update(evaluate_on_test(_unwrap(learner.model), run.data, run.cfg, ctx, loop.eval_images))
        times["evaluate"] = timer.seconds
    barrier(ctx)
    record.update({f"time_{k}": round(v, 4) for k, v in times.items()})
    for key, value in times.items():
        progress.phase_totals[key] += value
    progress.metrics.append(record)
    if ctx.is_main:
        _log_epoch(record, run.cfg.epochs)
        # In metrics.jsonl only (the checkpoint was copied before): the time training stood still for it.
        record["time_checkpoint"] = round(_checkpoint(run, learner, loop, progress, epoch), 4)
        _write_metrics(run.logs_dir / "metrics.jsonl", progress.metrics)
    barrier(ctx)


def _label_phase(run: _Run, learner: _Learner, loop: _EpochLoop, epoch: int) -> LabelPhaseResult:
    """Distances, clustering and support-pair selection on rank 0 (mutates the learner's graph and budget)."""
    cfg, features, graph = run.cfg, learner.memory.features, learner.graph
    seconds = {}
    with _Timer(features.device) as timer:
        # One k-NN search an epoch: the Jaccard distance and the nearest-outside search of DUS share it.
        neighbours = neighbour_table(features, k1=cfg.k1)
        distances = jaccard_distance(features, k1=cfg.k1, k2=cfg.k2, neighbours=neighbours)
    seconds["distance"] = timer.seconds
    with _Timer(features.device) as timer:
        labels = cluster(distances, graph, clustering=cfg.clustering, eps=cfg.eps, min_samples=cfg.min_samples)
    seconds["cluster"] = timer.seconds
    stats = cluster_statistics(labels, loop.pids)
    _warn_degenerate(int(stats["num_clusters"]), epoch, cfg.eps)
    with _Timer(features.device) as timer:
        # Every selector reuses the epoch's k-NN table instead of searching again.
        loop.select(
            epoch=epoch,
            labels=labels,
            features=features,
            constraints=graph,
            budget=learner.budget,
            log=loop.annotation_log,
            records=run.data.train,
            neighbours=neighbours,
        )
    seconds["select"] = timer.seconds
    pseudo, num_classes = pseudo_labels_from_clusters(labels)
    targets = EpochTargets(pseudo, num_classes, graph.component_ids(), graph.cannot_link_edges())
    stats = {k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in stats.items()}
    stats["num_classes"] = num_classes
    return LabelPhaseResult(targets, stats, seconds)


def _warn_degenerate(num_clusters: int, epoch: int, eps: float) -> None:
    """Say so when clustering found no cluster or a single one (the run goes on: SPEC 8)."""
    if num_clusters == 0:
        log.warning("epoch %d: clustering found no cluster (eps=%.3f); every image trains as its own class", epoch, eps)
    elif num_clusters == 1:
        log.warning("epoch %d: clustering found a single cluster (eps=%.3f)", epoch, eps)


def _train(
    run: _Run, learner: _Learner, loop: _EpochLoop, targets: EpochTargets, epoch: int
) -> tuple[dict[str, float], float, float]:
    """One epoch of training steps, then (several processes) the BatchNorm average, and the learning-rate step.

    Returns:
        ``(losses, lr, seconds)``: the mean losses (with ``rank_spread`` on several processes), the learning rate
        the epoch trained with, and the seconds of the steps.
    """
    ctx = run.ctx
    with _Timer(ctx.device) as timer:
        losses = train_epoch(
            learner.model,
            learner.optimizer,
            learner.memory,
            loop.train,
            targets,
            epoch=epoch,
            settings=loop.steps,
            ctx=ctx,
        )
    if ctx.distributed:
        average_buffers(_unwrap(learner.model), ctx)
        losses["rank_spread"] = _rank_spread(learner.model, learner.memory, ctx)
    lr = learner.scheduler.get_last_lr()[0]
    learner.scheduler.step()
    return losses, lr, timer.seconds


def _checkpoint(run: _Run, learner: _Learner, loop: _EpochLoop, progress: _RunState, epoch: int) -> float:
    """Hand the state after ``epoch`` to rank 0's background writer; returns the seconds training waited."""
    with _Timer(run.ctx.device) as timer:
        loop.checkpointer.submit(
            {
                "epoch": epoch,
                "config": run.cfg.to_dict(),
                "arch": run.cfg.arch,
                "model": _unwrap(learner.model).state_dict(),
                "optimizer": learner.optimizer.state_dict(),
                "scheduler": learner.scheduler.state_dict(),
                "memory": learner.memory.features.detach(),
                "graph": learner.graph.state_dict(),
                "budget": learner.budget.state_dict(),
                "metrics": progress.metrics,
                "phase_totals": progress.phase_totals,
                "wall_time": progress.wall_time + time.perf_counter() - run.started,
            },
            run.logs_dir / CHECKPOINT_NAME,
        )
    return timer.seconds


def _finish(run: _Run, learner: _Learner, progress: _RunState, *, elapsed: float) -> dict[str, Any]:
    """Write ``final.json`` (rank 0) and return it; ``elapsed``: this process's seconds since the start."""
    summary = _summary(run, learner, progress, elapsed)
    if run.ctx.is_main:
        atomic_write_text(run.logs_dir / "final.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _rank_spread(model: torch.nn.Module, memory: InstanceMemory, ctx: DistContext) -> float:
    """Largest difference between ranks of a checksum of the parameters and the memory (0 when in sync)."""
    checksum = torch.stack(
        [
            sum(p.detach().double().sum() for p in _unwrap(model).parameters()),
            memory.features.detach().double().sum(),
        ]
    ).reshape(1, 2)
    gathered = all_gather_cat(checksum, ctx)
    spread = float((gathered.max(dim=0).values - gathered.min(dim=0).values).max())
    if spread > 1e-3 and ctx.is_main:
        log.error("ranks diverged: parameter/memory checksums differ by %.3g across ranks", spread)
    return spread


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def cluster(distances, graph: ConstraintGraph, *, clustering: str, eps: float, min_samples: int) -> np.ndarray:
    """DBSCAN labels ``(n,)`` of the sparse Jaccard distances: ``constrained`` uses the graph's must-links and
    cannot-links (SPEC 3.2), ``plain`` ignores them (the ablation; the constraints still reach the loss)."""
    use_constraints = clustering == "constrained" and graph.has_constraints()
    return constrained_dbscan(
        distances, eps=eps, min_samples=min_samples, constraints=graph if use_constraints else None
    )


def _log_epoch(record: dict[str, Any], epochs: int) -> None:
    text = (
        f"epoch {record['epoch'] + 1}/{epochs}: clusters {record.get('num_clusters')} "
        f"outliers {record.get('num_outliers')} purity {record.get('purity', float('nan')):.3f} | "
        f"queries {record['queries_spent']} (+{record['queries_epoch']}) of {record['budget']}, "
        f"pairs known {record['pairs_known']} | loss {record['loss']:.3f}"
    )
    if "mAP" in record:
        text += f" | mAP {record['mAP']:.1f} R1 {record['rank1']:.1f}"
    log.info(text)


def _write_metrics(path: Path, metrics: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics))


def _summary(run: _Run, learner: _Learner, progress: _RunState, elapsed: float) -> dict[str, Any]:
    """``final.json``: the final-epoch model's numbers; the best-on-test figure only under ``best`` keys.

    Also ``layout``, what it trained with (SPEC 8): ``world_size``; ``bn_batch``, the images each BatchNorm group
    normalised over (16 in the paper's runs at every world size); ``pretrained``, the weight file's name (None
    for random weights) and ``pretrained_sha256``.
    """
    cfg, budget = run.cfg, learner.budget
    evaluated = [m for m in progress.metrics if "mAP" in m]
    final = evaluated[-1] if evaluated and evaluated[-1]["epoch"] == cfg.epochs - 1 else {}
    best = max(evaluated, key=lambda m: m["mAP"]) if evaluated else {}
    summary: dict[str, Any] = {key: final.get(key) for key in ("mAP", "mINP", "rank1", "rank5", "rank10")}
    summary.update(
        queries_spent=budget.total - budget.remaining,
        budget=budget.total,
        pairs_known=learner.graph.pairs_known(),
        num_train_images=len(run.data.train),
        best_mAP_on_test=best.get("mAP"),
        best_epoch_on_test=best.get("epoch"),
        epochs=cfg.epochs,
        wall_time_s=round(progress.wall_time + elapsed, 2),
        phase_times={k: round(v, 3) for k, v in progress.phase_totals.items()},
        device=str(run.ctx.device),
        **run.layout,
    )
    return summary
