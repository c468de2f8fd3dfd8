"""The ``mtlsearch`` command line.

Every subcommand is declared here (arguments and help) and dispatched lazily to a
``run_*(args) -> int`` function in the module that owns the concept, so
``mtlsearch --help`` stays fast and never imports torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mtlsearch.errors import (
    DEBUG_ENV,
    UserError,
    debug_enabled,
    internal_error_line,
    log_internal_error,
)
from mtlsearch.execution.strategies import SAMPLERS, SCHEDULERS
from mtlsearch.layout import TABLE_FILES

Handler = str  # "module:function"


def _add(
    sub: argparse._SubParsersAction, name: str, handler: Handler, help: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(_handler=handler)
    return parser


def _group(
    sub: argparse._SubParsersAction, name: str, help: str, metavar: str
) -> argparse._SubParsersAction:
    """A command group (``data``, ``config``, ``bench``): its subcommands' parsers, with
    the chosen one in ``args.<name>_command``; without one, :func:`main` shows its help."""
    parser = sub.add_parser(name, help=help)
    return parser.add_subparsers(dest=f"{name}_command", metavar=metavar)


STORAGE_HELP = (
    "where results go: a local folder, or a pyarrow.fs URI such as s3://bucket/trials"
    "?endpoint_override=HOST:PORT&scheme=http or gs://bucket/trials (default trials/)"
)

MAX_SIDE = 4096
"""Largest image side ``HxW`` arguments accept (a 100000x100000 image would never finish)."""


def _size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``120x160``) into a pair of positive ints of at most
    :data:`MAX_SIDE`."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 120x160, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"both sides must be positive, got {text!r}")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"each side must be at most {MAX_SIDE}, got {text!r}")
    return h, w


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted), e.g. --set regularizer.triplane_width=32",
    )


def _version() -> str:
    """The installed package's version (package metadata), or ``unknown``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtlsearch")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _data_commands(sub: Any) -> None:
    """``data``: generate, check, preview and import datasets."""
    data_sub = _group(sub, "data", "generate, check, preview and import datasets", "DATA_COMMAND")

    p = _add(data_sub, "synthrooms", "mtlsearch.data.synthrooms:run_cli",
             "generate the SynthRooms procedural multi-view indoor dataset")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--scenes", type=int, default=20, help="number of rooms (default 20)")
    p.add_argument("--views", type=int, default=4, help="views per room along a camera path (default 4)")
    p.add_argument("--size", type=_size, default=(120, 160), metavar="HxW", help="image size (default 120x160)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="fraction of scenes in val (default 0.2)")
    p.add_argument("--workers", type=int, default=None, help="generation processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--extra-views", type=int, default=0,
                   help="extra video frames per room with depth only, listed in gt_sets/extra.txt (default 0)")

    p = _add(data_sub, "preview", "mtlsearch.data.preview:run_cli",
             "draw a grid of views with all their labels into a PNG")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--num", type=int, default=4, help="views to draw (default 4)")
    p.add_argument("--split", default="train", help="split to draw from (default train)")

    p = _add(data_sub, "check", "mtlsearch.data.check:run_cli",
             "validate a dataset folder and print a summary")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--layout", choices=["nyud", "pascal"], default="nyud", help="dataset layout")

    p = _add(data_sub, "import-colmap", "mtlsearch.data.colmap:run_cli",
             "convert a COLMAP text model into cameras/<id>.json files")
    p.add_argument("model_dir", help="folder with cameras.txt and images.txt")
    p.add_argument("--out", required=True, help="cameras folder to write (ROOT/cameras)")
    p.add_argument("--scale", type=float, default=1.0, help="metric scale for translations (default 1)")


def _train_commands(sub: Any) -> None:
    """``train``: one config as a Ray Train run."""
    p = _add(sub, "train", "mtlsearch.execution.trainer:run_cli",
             "train one config as a Ray Train run (TorchTrainer)")
    p.add_argument("config", nargs="?", default=None,
                   help="config YAML file (default: the defaults, configs/default.yaml)")
    _add_set(p)
    p.add_argument("--workers", type=int, default=1, help="DDP workers (default 1)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0)")
    p.add_argument("--address", default=None, help="join a Ray cluster ('auto' or host:port)")
    p.add_argument("--storage", default="trials", help=STORAGE_HELP)
    p.add_argument("--name", default=None,
                   help="run name (default: the config file's stem, or 'run' without one)")

    p = _add(sub, "evaluate", "mtlsearch.evaluate:run_cli",
             "score a model (model.weights) on the validation split with the papers' protocol")
    p.add_argument("config", nargs="?", default=None,
                   help="config YAML file (default: the defaults, configs/default.yaml)")
    _add_set(p)


def _search_commands(sub: Any) -> None:
    """``search``: a search space on Ray Tune."""
    p = _add(sub, "search", "mtlsearch.execution.search:run_cli",
             "run a Ray Tune search from a YAML search space")
    p.add_argument("space", help="search space YAML file")
    p.add_argument("--profile", default=None, help="named override set of the space (e.g. cpu, paper)")
    _add_set(p)
    p.add_argument("--storage", default="trials", help=STORAGE_HELP)
    p.add_argument("--name", default=None, help="search name (default: the space's name)")
    p.add_argument("--address", default=None, help="join a Ray cluster ('auto' or host:port)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.add_argument("--reuse", action="store_true",
                   help="if the search folder exists: keep it when every trial finished, else --resume it")
    p.add_argument("--dry-run", action="store_true", help="print the trials or space and exit")
    p.add_argument("--num-samples", type=int, default=None, metavar="N",
                   help="override search.num_samples (random: draws per grid point; optuna: trials)")
    p.add_argument("--max-concurrent-trials", type=int, default=None, metavar="K",
                   help="override max_concurrent_trials")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="override search.seed (the sampler's seed; trial seeds are 'seeds')")
    p.add_argument("--sampler", default=None, choices=list(SAMPLERS),
                   help="override search.sampler (algorithm optuna)")
    p.add_argument("--scheduler", default=None, choices=list(SCHEDULERS),
                   help="override scheduler.type (its other keys keep the space's values or defaults)")
    p.add_argument("--tracking", default=None, metavar="LIST",
                   help="comma-separated trackers, e.g. tensorboard,mlflow,wandb (overrides the space's)")


def _result_commands(sub: Any) -> None:
    """``best``, ``status`` and ``prune``: a search's results and checkpoints."""
    p = _add(sub, "best", "mtlsearch.best:run_cli",
             "the best configuration of a search by its mean over seeds (Pareto set if "
             "multi-objective), its full config at the retrain seed")
    p.add_argument("search_dir", metavar="SEARCH", help="search folder, e.g. trials/demo")
    p.add_argument("--metric", default=None, metavar="M",
                   help="rank by this metric, or a,b for a Pareto set (default: the search's metric)")
    p.add_argument("--mode", choices=["max", "min"], default=None, help="direction of --metric")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the resolved config as YAML (mtlsearch train FILE reproduces it)")
    p = _add(sub, "status", "mtlsearch.status:run_cli",
             "the trials and configurations (ranked by seed mean) of a running or finished search")
    p.add_argument("search_dir", metavar="SEARCH", help="search folder, e.g. trials/demo")

    p = _add(sub, "prune", "mtlsearch.prune:run_cli",
             "apply a checkpoint policy to a search: the best K configurations keep their last "
             "whole checkpoint, other finished trials their weights only (or nothing)")
    p.add_argument("search_dir", metavar="SEARCH", help="search folder, e.g. trials/demo")
    p.add_argument("--keep", type=int, default=None, metavar="K",
                   help="configurations (every seed) that keep their whole checkpoint "
                        "(default: the space's checkpoints.keep, else 1)")
    p.add_argument("--others", choices=["half", "fp32", "none"], default=None,
                   help="what the other finished trials keep (default: the space's, else half)")
    p.add_argument("--dry-run", action="store_true", help="print what would be freed, change nothing")


def _reproduce_commands(sub: Any) -> None:
    """``reproduce``: a paper's tables."""
    p = _add(sub, "reproduce", "mtlsearch.reproduce:run_cli",
             "run the shipped spaces of a paper's tables and compare every table with the published one")
    p.add_argument("paper", choices=["3dmtl", "cvm"], help="3dmtl (ICLR 2024) or cvm (CVPR 2026)")
    p.add_argument("--profile", default="cpu", help="profile of the spaces (default cpu)")
    p.add_argument("--tables", default=None, metavar="LIST",
                   help="comma-separated table numbers or names, e.g. 4,6,7 (default: all)")
    p.add_argument("--storage", default="trials", help="storage folder (default trials/)")
    p.add_argument("--out", default=None, help="report folder (default reports/reproduce_<paper>)")
    p.add_argument("--address", default=None, help="join a Ray cluster ('auto' or host:port)")
    p.add_argument("--dry-run", action="store_true", help="list the spaces that would run and exit")


def _config_commands(sub: Any) -> None:
    """``config``: the schema and a resolved config."""
    config_sub = _group(sub, "config", "the config's JSON Schema, or a resolved config", "CONFIG_COMMAND")
    p = _add(config_sub, "schema", "mtlsearch.config.commands:run_cli",
             "write the JSON Schema of config files (for editor completion and checks)")
    p.add_argument("--out", default=None, metavar="FILE", help="file to write (default: stdout)")
    p = _add(config_sub, "show", "mtlsearch.config.commands:run_cli",
             "print the resolved config (defaults, CONFIG, then --set) as YAML")
    p.add_argument("config", nargs="?", default=None, help="config YAML file (default: defaults only)")
    _add_set(p)


def _predict_commands(sub: Any) -> None:
    """``predict``: inference with a trained checkpoint."""
    p = _add(sub, "predict", "mtlsearch.predict:run_cli",
             "single-image inference with a trained checkpoint (exported model)")
    p.add_argument("checkpoint", help="checkpoint.pt or a checkpoint folder")
    p.add_argument("images", nargs="+", help="image files (png/jpg)")
    p.add_argument("--out", default="predictions", help="output folder (default predictions/)")


def _report_commands(sub: Any) -> None:
    """``report``: tables, plots and parquet."""
    p = _add(sub, "report", "mtlsearch.report:run_cli",
             "turn a search's trials into tables, plots and parquet")
    p.add_argument("trials_dir", metavar="SEARCH",
                   help="search folder (e.g. trials/demo) or its storage URI (e.g. "
                        "s3://bucket/trials/demo?endpoint_override=HOST:PORT&scheme=http), "
                        "downloaded to .cache/mtlsearch/storage/ first; the report is written locally")
    p.add_argument("--out", default=None, help="output folder (default reports/<name>)")
    p.add_argument("--group-by", nargs="+", default=None, metavar="KEY", help="ablated config keys")
    p.add_argument("--baseline", default=None, help="row label to compute delta_m against")
    formats = ",".join(TABLE_FILES)
    p.add_argument("--format", default=formats, help=f"table formats (default {formats})")


def _weights_commands(sub: Any) -> None:
    """``weights``: official checkpoints converted."""
    weights_sub = _group(sub, "weights", "official checkpoints as our full-model weights", "WEIGHTS_COMMAND")
    p = _add(weights_sub, "convert", "mtlsearch.models.weights:run_convert",
             "convert an official InvPT or MTI-Net checkpoint to a model.weights file")
    p.add_argument("src", metavar="SRC", help="official checkpoint (a state_dict, or a dict with 'model' "
                   "or 'state_dict'; keys may start with 'module.')")
    p.add_argument("--from", dest="source", required=True, choices=["invpt", "mtinet"],
                   help="the official code base that wrote SRC")
    p.add_argument("--out", required=True, metavar="DST.safetensors", help="file to write")
    p.add_argument("--tasks", default=None, metavar="T1,T2,...",
                   help="invpt: the official task order, if SRC's key order lost it (e.g. a "
                        "safetensors file); default the order of SRC's keys")


def _bench_commands(sub: Any) -> None:
    """``bench``: benchmarks that print figures."""
    bench_sub = _group(sub, "bench", "benchmarks that print figures", "BENCH")
    p = _add(bench_sub, "data", "mtlsearch.bench.data:run_cli",
             "SynthRooms generation views/s and loading samples/s")
    p.add_argument("--scenes", type=int, default=200)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--size", type=_size, default=(120, 160), metavar="HxW")
    p.add_argument("--workers", type=int, default=None, help="generation/loader processes")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (removed by default)")
    p = _add(bench_sub, "model", "mtlsearch.bench.model:run_cli",
             "training step time and memory with and without the regularizer, per precision")
    p.add_argument("--config", default=None, metavar="CONFIG",
                   help="config file to measure (default: the defaults)")
    p.add_argument("--backbone", default=None, help="timm backbone (default: the config's)")
    p.add_argument("--decoder", default=None,
                   help="decoder; invpt / mtinet at the published size (ViT-L / HRNet-W48)")
    p.add_argument("--size", type=_size, default=None, metavar="HxW",
                   help="input size (default: --config's crop size, else 448x576)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size (default: --config's train.batch_size, else 2)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--precision", default=None, metavar="P1,P2",
                   help="precisions to measure, of fp32,bf16,fp16 (default: all; fp16 on CPU "
                        "only when named)")
    p.add_argument("--settings", default=None, metavar="S1,S2",
                   help="of train,train+reg,infer,infer exported (default: all)")
    p.add_argument("--channels-last", action="store_true", help="train.channels_last: true")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    _add_set(p)
    p = _add(bench_sub, "gpu", "mtlsearch.bench.gpu:run_cli",
             "InvPT and MTI-Net per precision on the GPU, and 2 trials sharing it")
    p.add_argument("--size", type=_size, default=(448, 576), metavar="HxW")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--precision", default=None, metavar="P1,P2",
                   help="precisions to measure, of fp32,bf16,fp16 (default: all)")
    p.add_argument("--models", default="invpt,mtinet", metavar="M1,M2",
                   help="of invpt,mtinet (default: both)")
    p.add_argument("--iterations", type=int, default=40,
                   help="iterations of each trial of the shared-GPU search")
    p.add_argument("--no-search", action="store_true", help="skip the 2-trial shared-GPU search")
    p.add_argument("--keep", action="store_true", help="keep the search's scratch folder")
    p = _add(bench_sub, "search", "mtlsearch.bench.search:run_cli",
             "per-trial overhead of mtlsearch search against a bare loop")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--workers", type=int, default=1,
                   help="DDP workers per trial (1: the loop runs in the trial's process)")
    p.add_argument("--profile-phases", action="store_true",
                   help="print where each trial's time goes (start, model, first step, ...)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch folder with the trials (removed by default)")
    p = _add(bench_sub, "crossview", "mtlsearch.bench.crossview:run_cli",
             "cross-view module time and memory against depth planes and views")
    p.add_argument("--size", type=_size, default=(56, 72), metavar="HxW", help="feature size")
    p.add_argument("--planes", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    p.add_argument("--views", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--repeats", type=int, default=1,
                   help="timed calls after one warm-up per setting (default 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlsearch",
        description="Hyperparameter and ablation search for 3D-aware multi-task dense prediction.",
    )
    parser.add_argument("--version", action="version", version=f"mtlsearch {_version()}")
    parser.add_argument("--debug", action="store_true",
                        help=f"let an internal error raise with its traceback (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    _data_commands(sub)
    _train_commands(sub)
    _search_commands(sub)
    _result_commands(sub)
    _reproduce_commands(sub)
    _config_commands(sub)
    _predict_commands(sub)
    _report_commands(sub)
    _weights_commands(sub)
    _bench_commands(sub)
    return parser


def _resolve(handler: Handler) -> Callable[[argparse.Namespace], int]:
    module, func = handler.split(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:
        # A group (``data``, ``bench``) or nothing at all: show its help.
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return
    if args.debug:
        os.environ[DEBUG_ENV] = "1"  # also seen by search's own handler
    try:
        code = _resolve(handler)(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # a bug, not the user's input
        if debug_enabled():
            raise
        logged = log_internal_error(err, list(argv) if argv is not None else None)
        print(internal_error_line(err, logged), file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
