"""``spal synth | pretrain | train | evaluate | annotate``: argument parsing, then one call into the library."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from spal.engine.config import CHOICES, PRECISIONS, TrainConfig, upgrade_saved_settings

__all__ = ["main", "build_parser", "train_config_from_args", "SYNTHETIC_DEFAULTS"]

log = logging.getLogger("spal")

# The paper's settings (TrainConfig's defaults) are for a GPU and the real data sets. On the synthetic set the
# defaults are the small CPU run of the harness's `ci` protocol instead (see harness/protocols/ci.json for why
# eps, lr and the epochs differ); any flag given on the command line still wins. The values are written out here,
# not read from ci.json, because spal never reads the harness's files; tests/harness/test_protocols.py checks that
# they agree with ci.json and names the ci settings the command line leaves alone. Change both together.
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "arch": "resnet18",
    "height": 64,
    "width": 32,
    "epochs": 8,
    "iters": 10,
    "batch_size": 32,
    "workers": 0,
    "k1": 12,
    "k2": 4,
    "eps": 0.45,
    "lr": 1e-3,
    "eval_step": 4,
    "logs_dir": "logs/synthetic",
}

METHOD_PAGE = "docs/method.md"

_TRAIN_FLAGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--data-dir",),
        {"help": "folder holding market1501/ or msmt17/ (created with a synthetic set for -d synthetic)"},
    ),
    (("--logs-dir",), {"help": "where checkpoints, metrics.jsonl and the annotation log go"}),
    (("--epochs",), {"type": int, "help": "training epochs (a label phase each)"}),
    (("--iters",), {"type": int, "help": "training iterations per epoch"}),
    (("--height",), {"type": int, "help": "image height after resizing"}),
    (("--width",), {"type": int, "help": "image width after resizing"}),
    (
        ("-b", "--batch-size"),
        {
            "type": int,
            "help": "global batch: consecutive indices of the multi-gallery stream; each process trains on its "
            "contiguous slice",
        },
    ),
    (
        ("--num-instances",),
        {"type": int, "help": "K: images a cluster adds to the stream (its anchor + K - 1 from other cameras)"},
    ),
    (("-j", "--workers"), {"type": int, "help": "data-loading processes"}),
    (("--budget",), {"help": "pair queries: a number or a multiple of n (training images) such as 2n, 0.5n"}),
    (("--eps",), {"type": float, "help": "DBSCAN radius on the Jaccard distance"}),
    (("--min-samples",), {"type": int, "help": "DBSCAN: neighbours that make a core point"}),
    (("--k1",), {"type": int, "help": "k-reciprocal neighbours of the Jaccard distance"}),
    (("--k2",), {"type": int, "help": "query expansion of the Jaccard distance (<= k1)"}),
    (("--lr",), {"type": float, "help": "Adam learning rate"}),
    (("--weight-decay",), {"type": float, "help": "Adam weight decay"}),
    (("--step-size",), {"type": int, "help": "epochs between learning-rate decays"}),
    (("--temperature",), {"type": float, "help": "contrastive loss temperature (> 0)"}),
    (("--momentum",), {"type": float, "help": "memory momentum m in M <- m M + (1 - m) f, in [0, 1]"}),
    (("--margin",), {"type": float, "help": "support-pair loss margin"}),
    (
        ("--lambda",),
        {"type": float, "dest": "lambda_sp", "help": "support-pair loss weight (0 = contrastive only)"},
    ),
    (("--eval-step",), {"type": int, "help": "evaluate on query/gallery every N epochs (and after the last)"}),
    (("--seed",), {"type": int, "help": "random seed"}),
    (
        ("--bn-groups",),
        {
            "type": int,
            "help": "BatchNorm groups each process cuts its slice of the batch into (default: groups of 16 "
            "images at any number of processes, as the paper's 4 GPUs x 16: 4 groups on one process at -b 64)",
        },
    ),
    (("--selection",), {"choices": CHOICES["selection"], "help": "support-pair selection (dus: the method)"}),
    (("--clustering",), {"choices": CHOICES["clustering"], "help": "constrained: DBSCAN obeys the answers"}),
    (
        ("--propagation",),
        {
            "choices": CHOICES["propagation"],
            "help": "off: only the answered pairs themselves count as known when support pairs are selected (pairs "
            "that answers imply can be asked again and cost queries); clustering and the support-pair loss use "
            "the full constraint graph with its transitive consequences either way",
        },
    ),
    (("--oracle",), {"choices": CHOICES["oracle"], "help": "who answers the support pairs"}),
    (("--annotation-timeout",), {"type": float, "help": "seconds to wait for human answers each epoch"}),
    (("--device",), {"choices": CHOICES["device"], "help": "auto: CUDA when present"}),
    (
        ("--pretrained",),
        {
            "metavar": "PATH|imagenet|none",
            "help": "ImageNet weights of the backbone (.pth / .pth.tar), loaded strictly. Not given: for resnet50 / "
            "resnet50_ibn_a the file in torch's hub cache ($TORCH_HOME/hub/checkpoints: resnet50-0676ba61.pth, "
            "resnet50_ibn_a-d9d0bb7b.pth or resnet50_ibn_a.pth.tar), and the run stops before any work when it "
            "is missing; for resnet18 random weights. 'imagenet': the hub-cache file for any backbone; 'none': "
            "random weights on purpose",
        },
    ),
    (("--synthetic-layout",), {"choices": CHOICES["synthetic_layout"], "help": "layout of -d synthetic"}),
]


def _with_default(dest: str, text: str | None) -> str:
    """``text`` followed by where the flag's value comes from when it is not given."""
    paper = TrainConfig().to_dict()[dest]
    default = f"default: {'none' if paper is None else paper}"
    if dest in SYNTHETIC_DEFAULTS:
        default += f"; with -d synthetic: {SYNTHETIC_DEFAULTS[dest]}"
    return f"{text} ({default})" if text else f"({default})"


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    # Flags default to None so that a flag not given takes its value from the --config file, the synthetic
    # defaults or, on --resume, the checkpoint; the help says which value that is.
    parser.add_argument(
        "-d", "--dataset", choices=CHOICES["dataset"], default=None, help="data set (default: synthetic)"
    )
    parser.add_argument(
        "-a", "--arch", choices=CHOICES["arch"], help=_with_default("arch", "backbone (resnet18: small CPU one)")
    )
    for flags, kwargs in _TRAIN_FLAGS:
        dest = kwargs.get("dest", flags[-1].lstrip("-").replace("-", "_"))
        parser.add_argument(*flags, default=None, **{**kwargs, "help": _with_default(dest, kwargs.get("help"))})
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="CKPT",
        help="continue the run in --logs-dir (or from CKPT) with its stored settings; of the flags given, "
        "only --epochs (to extend it), -j, --device, --data-dir, --logs-dir and --annotation-timeout may "
        "differ from them",
    )
    parser.add_argument(
        "--deterministic",
        action="store_true",
        default=None,
        help="deterministic kernels (two CPU runs give identical numbers) (default: off)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="bf16 autocast or plain fp32 for training and evaluation (default: bf16 on CUDA, fp32 on the CPU; "
        "the paper trained in fp32)",
    )
    parser.add_argument("--config", help="JSON file of TrainConfig settings (flags override it)")


def _add_pretrain_flags(parser: argparse.ArgumentParser) -> None:
    from spal.engine.pretrain import PretrainConfig

    for spec in dataclasses.fields(PretrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        parser.add_argument(flag, type=type(spec.default), default=spec.default, help=f"default {spec.default}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spal", description="Support Pair Active Learning for person re-id")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic data set in the Market-1501 or MSMT17_V1 layout")
    synth.add_argument("--layout", choices=CHOICES["synthetic_layout"], default="market1501")
    synth.add_argument("--out", required=True, help="the data dir to write (it will hold market1501/ or msmt17/)")
    synth.add_argument("--num-ids", type=int)
    synth.add_argument("--num-cams", type=int)
    synth.add_argument("--images-per-id", type=int)
    synth.add_argument("--height", type=int, default=128)
    synth.add_argument("--width", type=int, default=64)
    synth.add_argument("--seed", type=int, default=0)

    pre = sub.add_parser(
        "pretrain",
        help="train a backbone with identity labels on a separate generated population (the synthetic "
        "benchmark's stand-in for ImageNet); prints the weight file for --pretrained",
    )
    pre.add_argument("--data-dir", default="data", help="cache folder (pretrained/ and the population go here)")
    _add_pretrain_flags(pre)

    train = sub.add_parser(
        "train",
        help=f"train SPAL (the method and protocol: {METHOD_PAGE})",
        description=f"Train SPAL. Defaults are the paper's settings ({METHOD_PAGE} in the repository), or the "
        "small CPU settings with -d synthetic; a --config file, then the flags, override them. Every value "
        "is checked before anything is read or written.",
    )
    _add_train_flags(train)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint on query/gallery (mAP, CMC)")
    ev.add_argument("-d", "--dataset", choices=CHOICES["dataset"], default="synthetic")
    ev.add_argument("--data-dir", default="data")
    ev.add_argument("--resume", required=True, metavar="CKPT", help="checkpoint written by spal train")
    ev.add_argument("--synthetic-layout", choices=CHOICES["synthetic_layout"], default=None)
    ev.add_argument("--device", choices=CHOICES["device"], default="auto")
    ev.add_argument("-j", "--workers", type=int, default=None)

    sub.add_parser("annotate", help="serve the annotation page of a run (see spal annotate --help)", add_help=False)
    return parser


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge, in increasing priority: paper defaults, synthetic CPU defaults, ``--config`` file, flags.

    With ``--resume`` and a checkpoint to resume, the settings the checkpoint stored take the place of the
    defaults, so a flag left out keeps the run's value (and a flag given may still be refused by the run).
    """
    given: dict[str, Any] = {}
    if args.config:
        given.update(json.loads(Path(args.config).read_text()))
    for key in TrainConfig.keys():
        value = getattr(args, key, None)
        if value is not None:
            given[key] = value
    dataset = given.get("dataset", "synthetic")
    values = dict(SYNTHETIC_DEFAULTS) if dataset == "synthetic" else {}
    cfg = TrainConfig.from_dict({**values, "dataset": dataset, **given})
    if args.resume is None:
        return cfg
    from spal.engine.checkpoint import load_checkpoint
    from spal.engine.runner import CHECKPOINT_NAME

    source = Path(args.resume or Path(cfg.logs_dir) / CHECKPOINT_NAME)
    if not source.is_file():
        return cfg
    # A checkpoint of an earlier spal says amp where today's say precision.
    saved = upgrade_saved_settings(load_checkpoint(source, mmap=True)["config"])
    merged = {**{k: v for k, v in saved.items() if k in TrainConfig.keys()}, **given}
    if not args.resume:
        # The run goes on where its checkpoint was found, even if the folder was moved since.
        merged["logs_dir"] = cfg.logs_dir
    return TrainConfig.from_dict(merged)


def _setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    # faiss logs which CPU build it loaded, at INFO, on every start: only worth seeing when debugging.
    logging.getLogger("faiss").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _cmd_synth(args: argparse.Namespace) -> int:
    from spal.datasets import synthetic

    kwargs = {
        k: v
        for k, v in (
            ("num_ids", args.num_ids),
            ("num_cams", args.num_cams),
            ("images_per_id", args.images_per_id),
        )
        if v is not None
    }
    try:
        root = synthetic.generate(
            args.out, layout=args.layout, height=args.height, width=args.width, seed=args.seed, **kwargs
        )
    except (FileExistsError, ValueError) as error:
        log.error("%s", error)
        return 2
    log.info("wrote a synthetic %s data set; use --data-dir %s", args.layout, root)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from spal.engine.checkpoint import CheckpointError
    from spal.models import BatchNormLayoutError, PretrainedError, resolve_pretrained

    try:
        cfg = train_config_from_args(args)
    except CheckpointError as error:
        log.error("%s", error)
        return 2
    except ValueError as error:
        log.error("invalid setting: %s", error)
        return 2
    from spal.data import ImageLoadError
    from spal.engine.runner import check_run_inputs, run_training

    # torchrun numbers the processes in RANK; rank 0 alone reports (progress, the final line).
    is_main = os.environ.get("RANK", "0") == "0"
    resume_from = args.resume or None
    try:
        data = check_run_inputs(cfg, resume=args.resume is not None, resume_from=resume_from, progress=is_main)
    except (ValueError, ImageLoadError) as error:
        log.error("%s", error)
        return 2
    try:
        # A missing weight file is named (after a missing data set, SPEC 8) before anything is written.
        resolve_pretrained(cfg.arch, cfg.pretrained)
    except (PretrainedError, FileNotFoundError) as error:
        if is_main:
            log.error("%s", error)
        return 2
    # Only now, with every input checked, does the run write anything.
    _setup_logging(args.verbose, Path(cfg.logs_dir) / "train.log")
    human = None
    if cfg.oracle == "human":
        from spal.annotation import make_human_select

        try:
            human = make_human_select(cfg)
        except ValueError as error:
            log.error("invalid setting: %s", error)
            return 2
    try:
        summary = run_training(
            cfg, resume=args.resume is not None, resume_from=resume_from, human_select=human, data=data
        )
    except (BatchNormLayoutError, PretrainedError) as error:
        # Every process of a torchrun refuses alike; one line from the first is enough.
        if os.environ.get("RANK", "0") == "0":
            log.error("%s", error)
        return 2
    finally:
        if human is not None:
            human.close()
    if is_main:
        log.info("final: %s", json.dumps({k: summary[k] for k in ("mAP", "rank1", "queries_spent", "budget")}))
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from spal.engine.pretrain import PretrainConfig, pretrain

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)}
    try:
        cfg = PretrainConfig.from_dict(values)
    except ValueError as error:
        log.error("invalid setting: %s", error)
        return 2
    weights = pretrain(cfg, args.data_dir)
    sys.stdout.write(f"{weights}\n")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from spal.data import ImageLoadError
    from spal.engine.evaluate import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(
            args.resume,
            dataset=args.dataset,
            data_dir=args.data_dir,
            synthetic_layout=args.synthetic_layout,
            device=args.device,
            workers=args.workers,
        )
    except (ValueError, ImageLoadError) as error:
        log.error("%s", error)
        return 2
    from tabulate import tabulate

    # Every metric is a percentage but num_valid_queries, a count of queries: the unit goes with each row.
    rows = [[f"{k} (count)", v] if isinstance(v, int) else [f"{k} (%)", f"{v:.2f}"] for k, v in result.items()]
    sys.stdout.write(tabulate(rows, headers=["metric", "value"], tablefmt="github") + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "annotate":
        from spal.annotation.server import annotate_main

        return annotate_main(argv[1:])
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from spal.datasets import DatasetError

    try:
        return {"synth": _cmd_synth, "pretrain": _cmd_pretrain, "train": _cmd_train, "evaluate": _cmd_evaluate}[
            args.command
        ](args)
    except (DatasetError, FileNotFoundError) as error:
        log.error("%s", error)
        return 2
