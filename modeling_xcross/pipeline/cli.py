"""`xcross`: train per-domain LoRA recommenders (source adapters), train X-Cross on a target domain, train the
head-only baselines, evaluate.

    xcross train-adapter --domain Toys --output-dir runs/toys
    xcross train --target Tools --sources runs/toys runs/sports --output-dir runs/xcross-tools
    xcross train-head --domain Tools --merge-sources runs/toys runs/sports --output-dir runs/merged-tools
    xcross evaluate --model-dir runs/xcross-tools --domain Tools
    xcross baseline --method popularity --domain Tools --output-dir runs/popularity-tools
    xcross baseline --method best-reference --domain Tools --output-dir runs/best-reference-tools
    xcross recommend --model-dir runs/xcross-tools --domain Tools --history "title one; title two" --top-k 10
    xcross recommend --model-dir runs/xcross-tools --domain Tools --history-json '["a title; with a semicolon"]'
    xcross recommend --model-dir runs/xcross-tools --domain Tools --history-ids 12 40
    xcross prepare --interactions events.csv --items items.csv --output-dir data/MyShop

Runs under `torchrun --nproc_per_node N` and `accelerate launch` unchanged. Also `python -m modeling_xcross.pipeline.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from configuration_xcross.configuration_xcross import HISTORY_ENCODINGS, POOLING_MODES, SCORING_MODES, XCrossConfig

from ..auto_loading import ModelDirError
from ..errors import XCrossError
from ..inference.catalogue import DEFAULT_RERANK_TOP, RecommendedItem
from ..packaged_models import DEFAULT_BACKBONE
from .baselines import BASELINES, evaluate_baseline
from .comparison import ComparisonError, compare
from .data import DATA_DIR_HELP, MIN_HISTORY, DataError, default_data_dir
from .domain_ranking import SemicolonHistory, recommend_from_dir
from .interactions import SPLITS, InteractionColumns, check_output_dir, read_interactions, write_domain
from .logs import LOG_LEVELS, command_logging
from .runs import OutputDirError, RunSettings, evaluate_model, train
from .samples import TRAIN_POSITIONS
from .user_batches import NEGATIVE_MODES

# Chosen on validation users (research/results.md, "Choosing the defaults"); the model's scoring defaults are
# XCrossConfig's own, so a model built in Python scores as the one the commands train.
DEFAULT_TRAIN_POSITIONS = "all"
# An upper bound: by default training runs on all train users until validation MRR stops improving (--patience).
DEFAULT_EPOCHS = 20.0
# Chosen on validation users (research/results/negatives/): the negatives where user batches apply (dual scoring,
# item histories, no --in-batch-negatives), per-example elsewhere; and the examples per batch that suit each path.
DEFAULT_NEGATIVES = "in-batch-logq"
DEFAULT_BATCH_SIZE = {"user batches": 32, "per-example": 8}
# Chosen on validation users (research/results/ablation/): hold the rate after a short warm-up and let early stopping
# end the run; the dual head's residual projection and its start chosen on the validation users.
DEFAULT_LR_SCHEDULER = "constant_with_warmup"
DEFAULT_WARMUP_STEPS = 20
DEFAULT_PROJECTION_RANK = XCrossConfig.projection_rank

# What a user's input can cause (bad options, data, directories, files): a message and exit status 1, where other
# exceptions (a bare ValueError among them) are bugs and keep their traceback.
USER_ERRORS = (XCrossError, OSError)
# The shell's status for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
# The commands that checkpoint as they train, and resume when run again.
TRAINING = ("train-adapter", "train", "train-head")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1, got {text}")
    return value


def _max_steps(text: str) -> int:
    value = int(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, or -1 to train --epochs epochs; got {text}")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _decay(text: str) -> float:
    value = _finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (1 is the plain mean), got {text}")
    return value


def _weight_or_none(text: str) -> float | None:
    return None if text.lower() == "none" else _finite_float(text)


def _rank_or_none(text: str) -> int | None:
    return None if text.lower() == "none" else _positive_int(text)


def _label_and_dir(text: str) -> tuple[str, Path]:
    label, separator, directory = text.partition("=")
    if not separator or not label or not directory:
        raise ComparisonError(f"--runs {text!r}: expected LABEL=DIR, e.g. X-Cross=runs/xcross-tools.")
    return label, Path(directory)


def _common(parser: argparse.ArgumentParser, evaluating: bool = False, max_length: int | None = 128) -> None:
    """The options every command but `compare`, `prepare` and `recommend` takes; `max_length` None: the model's."""
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback too")
    parser.add_argument("--data-dir", default=default_data_dir(),
                        help="folder holding one folder per domain (meta_data.json, smap.json, train.json, "
                             f"test.json); default: {DATA_DIR_HELP}")
    parser.add_argument("--max-eval-users", type=_positive_int, default=200,
                        help="test users scored (first N of a seeded shuffle); default: %(default)s")
    parser.add_argument("--val-users", type=_positive_int, default=100,
                        help="train users held out for validation (early stopping); default: %(default)s")
    parser.add_argument("--eval-batch-size", type=_positive_int, default=4,
                        help="users per evaluation batch (each has 30 candidates); default: %(default)s")
    if max_length is None:
        parser.add_argument("--max-length", type=_positive_int, default=None,
                            help="tokens per prompt; default: the model's own, as it was trained")
    else:
        parser.add_argument("--max-length", type=_positive_int, default=max_length,
                            help="tokens per prompt; the oldest history is truncated first; default: %(default)s")
    parser.add_argument("--seed", type=_seed, default=42,
                        help="seed of the user split, candidate lists, initialisation and data order; "
                             "default: %(default)s")
    parser.add_argument("--full-ranking", action="store_true",
                        help="also rank each test user's true next item among all items of the domain outside the "
                             "history; metrics.json gets \"full_ranking\": recall@10, ndcg@10, mrr, users")
    if evaluating:
        return
    _rerank_top(parser)
    parser.add_argument("--output-dir", required=True, type=Path,
                        help="where checkpoints, the trained model, candidate lists and metrics.json go; an existing "
                             "one is resumed from its last checkpoint if it holds the same run")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help="frozen base model (Hub id or local path); default: %(default)s")
    parser.add_argument("--max-train-users", type=_positive_int, default=None,
                        help="train users used for training (after the validation users); default: all")
    parser.add_argument("--epochs", type=_positive_float, default=DEFAULT_EPOCHS,
                        help="most training epochs (may be fractional): training evaluates on the validation users "
                             "every epoch (or --save-steps) and stops once --patience evaluations bring no better "
                             "validation MRR; default: %(default)s")
    parser.add_argument("--max-steps", type=_max_steps, default=-1,
                        help="stop after this many optimizer steps (overrides --epochs when > 0); default: %(default)s")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="training examples per batch per process (user batches: whole users, about this "
                             f"many examples); default: {DEFAULT_BATCH_SIZE['user batches']} on user batches, "
                             f"{DEFAULT_BATCH_SIZE['per-example']} with --negatives per-example")
    parser.add_argument("--train-negatives", type=_positive_int, default=7,
                        help="uniform negatives per training example (--negatives per-example) or shared by a batch "
                             "(uniform, in-batch-logq), resampled each epoch; default: %(default)s")
    parser.add_argument("--learning-rate", type=_positive_float, default=5e-4,
                        help="AdamW learning rate; default: %(default)s")
    parser.add_argument("--lr-scheduler", choices=("constant_with_warmup", "linear"), default=DEFAULT_LR_SCHEDULER,
                        help="constant_with_warmup: the rate rises over --warmup-steps, then holds, and early stopping "
                             "ends the run; linear: it decays to zero over --epochs; default: %(default)s")
    parser.add_argument("--warmup-steps", type=int, default=DEFAULT_WARMUP_STEPS,
                        help="optimizer steps of linear warm-up; default: %(default)s")
    parser.add_argument("--patience", type=_positive_int, default=2,
                        help="evaluations without a better validation MRR before stopping early; default: %(default)s")
    parser.add_argument("--save-steps", type=_positive_int, default=None,
                        help="evaluate and checkpoint every N steps instead of every epoch")
    parser.add_argument("--scoring", choices=SCORING_MODES, default=XCrossConfig.scoring,
                        help="dual: history and candidate titles encoded separately, cosine over a learned "
                             "temperature, in-batch negatives; cross: the paper's (history, candidate) prompt read by "
                             "a pooler and score head; default: %(default)s")
    parser.add_argument("--pooling", choices=POOLING_MODES, default=None,
                        help="token pooling; default: mean for dual scoring, else cls (encoders) / last (decoders)")
    _dual_scoring(parser)
    parser.add_argument("--projection-rank", type=_rank_or_none, default=DEFAULT_PROJECTION_RANK,
                        help="dual scoring: rank of the head's residual projection of every representation (the "
                             "identity at initialisation, trained); 'none' for none; default: %(default)s")
    parser.add_argument("--choose-start", action=argparse.BooleanOptionalAction, default=True,
                        help="dual scoring with item histories: before training, choose the history decay and the "
                             "prior weight on the validation users (they replace "
                             "--history-decay and --popularity-weight as the start); default: %(default)s")
    parser.add_argument("--choose-temperature", action=argparse.BooleanOptionalAction, default=False,
                        help="with --choose-start, also choose the starting temperature, by validation "
                             "cross-entropy, instead of --temperature; default: %(default)s")
    parser.add_argument("--center-representations", action=argparse.BooleanOptionalAction, default=False,
                        help="dual scoring: subtract the train titles' mean representation (untrained model) before "
                             "the cosine, for backbones whose states share one direction (decoders); default: "
                             "%(default)s")
    parser.add_argument("--in-batch-negatives", action=argparse.BooleanOptionalAction, default=False,
                        help="dual scoring: every example's candidates are negatives of the others in its batch "
                             "(besides its own --train-negatives); default: %(default)s")
    parser.add_argument("--negatives", choices=NEGATIVE_MODES, default=None,
                        help="dual scoring with --history-encoding items: per-example: each example's own "
                             "--train-negatives; the others train on batches of whole users, each distinct title "
                             "encoded once per step, sharing uniform: --train-negatives uniform items per batch; "
                             "in-batch-logq: those and the batch's positives, logQ-corrected; full: every item of "
                             f"the domain (costs the catalogue each step); default: {DEFAULT_NEGATIVES} where user "
                             "batches apply, else per-example")
    parser.add_argument("--train-positions", choices=TRAIN_POSITIONS, default=DEFAULT_TRAIN_POSITIONS,
                        help="all: every position of a train history is an example (the item predicted from the "
                             "items before it); last: only the last item; default: %(default)s")


def _dual_scoring(parser: argparse.ArgumentParser, history_encoding: bool = True) -> None:
    """The options of dual scoring's score (the untrained baselines always encode histories as items)."""
    parser.add_argument("--temperature", type=_positive_float, default=XCrossConfig.temperature,
                        help="initial temperature of dual scoring (cosine / temperature; learned); default: "
                             "%(default)s")
    if history_encoding:
        parser.add_argument("--history-encoding", choices=HISTORY_ENCODINGS, default=XCrossConfig.history_encoding,
                            help="dual scoring: items: a history is the recency-weighted mean of its titles' "
                                 "representations; text: one prompt of its titles; default: %(default)s")
    parser.add_argument("--history-decay", type=_decay, default=XCrossConfig.history_decay,
                        help="with --history-encoding items, the weight of an item k steps before the last is "
                             "decay ** k; default: %(default)s")
    parser.add_argument("--popularity-weight", type=_weight_or_none, default=XCrossConfig.popularity_weight,
                        help="dual scoring: initial weight w of the learned prior w * log(1 + count in the train "
                             "histories); 'none' for no prior; default: %(default)s")


def _rerank_top(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rerank-top", type=_positive_int, default=DEFAULT_RERANK_TOP,
                        help="cross scoring over a catalogue: items the first stage (the untrained backbone's "
                             "similarity) retrieves for the model to re-rank; default: %(default)s")


def _history(text: str) -> SemicolonHistory:
    titles = SemicolonHistory(text)
    if not titles:
        raise argparse.ArgumentTypeError("is empty: pass item titles separated by ';', e.g. \"drill; saw blade\"")
    return titles


def _history_json(text: str) -> list:
    """A JSON list of titles and item ids: titles that hold ';' need no escaping."""
    try:
        history = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"is not valid JSON ({error}); pass a list, e.g. '[\"drill\", 12]'")
    if not isinstance(history, list):
        raise argparse.ArgumentTypeError(f"is a JSON {type(history).__name__}, not a list; pass e.g. "
                                         "'[\"drill\", 12]'")
    return history


def format_recommendations(items: list[RecommendedItem], held_out: str | int | None = None) -> str:
    """A plain-text table, best first; a held-out next item in it is marked."""
    width = max(len(str(item.item_id)) for item in items)
    lines = [f"{'rank':>4}  {'score':>9}  {'item':>{width}}  title"]
    lines += [f"{item.rank:>4}  {item.score:>9.4f}  {item.item_id!s:>{width}}  {item.title}"
              + ("   <- the user's held-out next item" if item.item_id == held_out else "") for item in items]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xcross", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    adapter = commands.add_parser("train-adapter", help="train a per-domain LoRA recommender (a source adapter, or "
                                  "the target-LoRA baseline)")
    adapter.add_argument("--domain", required=True, help="domain folder name under --data-dir, e.g. Toys")
    _common(adapter)
    adapter.add_argument("--lora-r", type=_positive_int, default=8, help="LoRA rank; default: %(default)s")
    adapter.add_argument("--lora-alpha", type=_positive_int, default=16, help="LoRA alpha; default: %(default)s")

    xcross = commands.add_parser("train", help="train X-Cross on a target domain from source adapters")
    xcross.add_argument("--target", required=True, help="target domain folder name under --data-dir, e.g. Tools")
    xcross.add_argument("--sources", required=True, nargs="+", type=Path,
                        help="output directories of `xcross train-adapter` runs on the same --backbone")
    _common(xcross)
    xcross.add_argument("--fusion-learning-rate", type=_positive_float, default=None,
                        help="learning rate of the fusion heads; with --scale-fusion-input one step moves z about as "
                             "far through W as through b, so they train at --learning-rate like the rest; unscaled, "
                             "z sums n * d products and needs a rate hundreds of times smaller (1e-5 was the "
                             "default then); default: --learning-rate")
    xcross.add_argument("--normalize-fusion-input", action=argparse.BooleanOptionalAction,
                        default=XCrossConfig.normalize_fusion_input,
                        help="the fusion heads read each stream at unit root mean square per token, so z does not "
                             "scale with the backbone's activations; default: %(default)s")
    xcross.add_argument("--scale-fusion-input", action=argparse.BooleanOptionalAction,
                        default=XCrossConfig.scale_fusion_input,
                        help="divide the fusion heads' input by sqrt(n * d), so that W and b move z alike per step; "
                             "default: %(default)s")
    xcross.add_argument("--fusion-bound", type=_weight_or_none, default=XCrossConfig.fusion_bound,
                        help="z = c * tanh((W h + b) / c) with this c; 'none' for unbounded z; default: %(default)s")
    xcross.add_argument("--stream-dropout", action=argparse.BooleanOptionalAction, default=XCrossConfig.stream_dropout,
                        help="run the frozen base and adapters with the base's dropout in training (each stream its "
                             "own mask); default: %(default)s")
    xcross.add_argument("--beta", type=_finite_float, default=1.0,
                        help="weight of the cross-domain scaling term of the refine step; default: %(default)s")
    xcross.add_argument("--gamma", type=_finite_float, default=1.0,
                        help="weight of the interaction (difference) term of the refine step; default: %(default)s")

    head = commands.add_parser("train-head", help="baseline: train only the scoring head on the frozen base, or on "
                               "the base with source adapters merged into one (--merge-sources)")
    head.add_argument("--domain", required=True, help="domain folder name under --data-dir, e.g. Tools")
    head.add_argument("--merge-sources", dest="sources", nargs="+", type=Path, default=[],
                      help="output directories of `xcross train-adapter` runs on the same --backbone, merged with "
                           "equal weights (PEFT add_weighted_adapter, 'cat': the mean of their LoRA deltas) and kept "
                           "frozen; default: none, the head is trained on the bare base")
    _common(head)

    baseline = commands.add_parser("baseline", help="score a reference that needs no training (popularity, untrained "
                                   "backbone similarity, random) on the test lists of the trained models")
    baseline.add_argument("--method", required=True, choices=BASELINES,
                          help="which baseline; best-reference: popularity over all train users, recency-weighted "
                               "popularity, similarity and similarity + prior, their settings and the best of them "
                               "chosen on the latest --val-users train users")
    baseline.add_argument("--domain", required=True, help="domain folder name under --data-dir, e.g. Tools")
    baseline.add_argument("--output-dir", required=True, type=Path, help="where metrics.json and the lists go")
    baseline.add_argument("--backbone", default=DEFAULT_BACKBONE,
                          help="backbone of the similarity baseline; default: %(default)s")
    baseline.add_argument("--max-train-users", type=_positive_int, default=None,
                          help="train users whose histories popularity counts (as in the trained runs); default: all")
    _common(baseline, evaluating=True)
    _dual_scoring(baseline, history_encoding=False)

    comparison = commands.add_parser("compare", help="one table (markdown, JSON, MRR bar chart) of finished runs "
                                     "scored on the same test lists")
    comparison.add_argument("--runs", required=True, nargs="+", metavar="LABEL=DIR",
                            help="the runs to compare, in table order: label and output directory")
    comparison.add_argument("--model", default="X-Cross", help="the row the verdict is about; default: %(default)s")
    comparison.add_argument("--output-dir", required=True, type=Path, help="where comparison.md/.json/_mrr.png go")
    comparison.add_argument("--json", action="store_true", help="print comparison.json instead of the markdown")
    comparison.add_argument("--debug", action="store_true", help="on an error, show its traceback too")

    evaluate = commands.add_parser("evaluate", help="score a trained model on fixed candidate lists; writes "
                                   "MODEL_DIR/eval_<domain>_<split>/metrics.json")
    evaluate.add_argument("--model-dir", required=True, type=Path,
                          help="output directory of a finished train-adapter, train-head or train run")
    evaluate.add_argument("--domain", required=True, help="domain folder name under --data-dir")
    evaluate.add_argument("--split", choices=("test", "validation"), default="test",
                          help="test users, or the validation users held out from train users; default: %(default)s")
    _common(evaluate, evaluating=True, max_length=None)
    _rerank_top(evaluate)
    evaluate.add_argument("--json", action="store_true",
                          help="print the metrics as JSON on stdout (the other lines go to stderr)")

    recommend = commands.add_parser("recommend", help="the top items of a domain's whole catalogue for a history, "
                                    "from a trained model (item representations cached in MODEL_DIR/item_cache)")
    recommend.add_argument("--model-dir", required=True, type=Path,
                           help="output directory of a finished train-adapter, train-head or train run")
    recommend.add_argument("--domain", required=True, help="domain folder name under --data-dir: its items are "
                           "the catalogue")
    recommend.add_argument("--data-dir", default=default_data_dir(), help=f"default: {DATA_DIR_HELP}")
    given = recommend.add_mutually_exclusive_group(required=True)
    given.add_argument("--history", type=_history, help="item titles, oldest first, separated by ';'; titles "
                       "outside the catalogue are read as text")
    given.add_argument("--history-json", type=_history_json, metavar="JSON",
                       help="the history as a JSON list of titles and item ids, oldest first, e.g. "
                            "'[\"Wallplate, 2-Port; White\", 40]' (for titles that hold ';')")
    given.add_argument("--history-ids", nargs="+", metavar="ID", help="the history as the domain's own item ids "
                       "(a shop's SKUs as its table wrote them, the Amazon asins; the integer ids of smap.json are "
                       "taken too), oldest first")
    given.add_argument("--user", help="a user id of the domain: a train user's whole history, or a test user's "
                       "history in test.json without the last item (which the table marks when recommended)")
    recommend.add_argument("--top-k", type=_positive_int, default=10, help="items listed; default: %(default)s")
    recommend.add_argument("--include-history", action="store_true",
                           help="rank the history's own items too (left out by default)")
    recommend.add_argument("--json", action="store_true",
                           help="print a JSON list of {item_id, title, score, rank} instead of a table")
    _rerank_top(recommend)
    recommend.add_argument("--debug", action="store_true", help="on an error, show its traceback too")
    _prepare(commands)
    for command in commands.choices.values():
        _messages(command)
    return parser


def package_version() -> str:
    try:
        return version("xcross-rec")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def _messages(parser: argparse.ArgumentParser) -> None:
    """The options of what a command prints besides its results, which every command takes."""
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                        help="show messages of this level and above (the project's, labelled [xcross], and the "
                             "libraries'); default: warnings")
    parser.add_argument("--quiet", action="store_true",
                        help="only errors besides the results: --log-level error, and no progress bars when run as "
                             "the xcross command")


def _prepare(commands) -> None:
    prepare = commands.add_parser("prepare", help="check your own interactions and item titles (CSV, TSV, JSON "
                                  "Lines, Parquet, RecBole atomic files) and write the domain folder the other "
                                  "commands read")
    prepare.add_argument("--interactions", required=True, type=Path,
                         help="table of (user, item, timestamp) rows: .csv, .tsv, .jsonl, .parquet or RecBole's "
                              ".inter; the text ones may be compressed (.gz, .bz2, .xz)")
    prepare.add_argument("--items", required=True, type=Path,
                         help="table of (item, title) rows: .csv, .tsv, .jsonl, .parquet or RecBole's .item; the "
                              "text ones may be compressed (.gz, .bz2, .xz)")
    prepare.add_argument("--output-dir", required=True, type=Path,
                         help="the domain folder to write: pass its parent as --data-dir and its name as --domain; "
                              "refused when it already holds files, unless --overwrite")
    prepare.add_argument("--overwrite", action="store_true",
                         help="replace the domain files of an --output-dir that already holds files")
    prepare.add_argument("--encoding", default="utf-8",
                         help="text encoding of CSV and JSON Lines files (e.g. latin-1); default: %(default)s")
    prepare.add_argument("--delimiter", default=None,
                         help="the field separator of delimited text files: one character, or tab, comma, "
                              "semicolon, pipe, space; default: tab for .tsv, .inter and .item, else comma")
    defaults = InteractionColumns()
    prepare.add_argument("--user-column", default=defaults.user, help="default: %(default)s")
    prepare.add_argument("--item-column", default=defaults.item, help="default: %(default)s")
    prepare.add_argument("--time-column", default=defaults.timestamp,
                         help="all numbers (e.g. Unix seconds) or all ISO 8601 text (zone-less times read as UTC); "
                              "default: %(default)s")
    prepare.add_argument("--title-column", default=defaults.title, help="in --items; default: %(default)s")
    prepare.add_argument("--items-item-column", default=None,
                         help="the item column of --items; default: the same as --item-column")
    prepare.add_argument("--min-interactions", type=_positive_int, default=3,
                         help=f"users with fewer interactions with titled items are dropped (at least {MIN_HISTORY}); "
                              "default: %(default)s")
    prepare.add_argument("--split", choices=SPLITS, default="time",
                         help="time: the test users are those whose last interaction is the latest; random: a "
                              "seeded random choice; default: %(default)s")
    prepare.add_argument("--test-fraction", type=_finite_float, default=0.2,
                         help="fraction of the kept users that become test users, in [0, 1); default: %(default)s")
    prepare.add_argument("--seed", type=_seed, default=0, help="seed of --split random; default: %(default)s")
    prepare.add_argument("--debug", action="store_true", help="on an error, show its traceback too")


def negatives_and_batch_size(args: argparse.Namespace) -> tuple[str, int]:
    """--negatives and --batch-size, or their defaults: `DEFAULT_NEGATIVES` where user batches apply, else
    per-example, each with the batch size of `DEFAULT_BATCH_SIZE` that suits it. User batches run on one process, so
    the default under `torchrun` (WORLD_SIZE above 1) is per-example."""
    user_batches_apply = (args.scoring == "dual" and args.history_encoding == "items"
                          and not args.in_batch_negatives)
    one_process = int(os.environ.get("WORLD_SIZE", "1")) == 1
    negatives = args.negatives or (DEFAULT_NEGATIVES if user_batches_apply and one_process else "per-example")
    if negatives != "per-example" and not user_batches_apply:
        raise XCrossError(f"--negatives {args.negatives} trains on batches of whole users that share each history's "
                          "item titles: it needs --scoring dual and --history-encoding items, without "
                          "--in-batch-negatives; use --negatives per-example otherwise.")
    path = "per-example" if negatives == "per-example" else "user batches"
    return negatives, args.batch_size or DEFAULT_BATCH_SIZE[path]


def _dual_settings(args: argparse.Namespace, negatives: str) -> dict:
    """The dual-scoring options as `RunSettings` fields; unset (the cross form's defaults) under --scoring cross."""
    if args.scoring != "dual":
        if args.center_representations:
            raise XCrossError("--center-representations is a dual-scoring option (center_representations centres "
                              "the representations the cosine compares); drop it, or use --scoring dual.")
        return {}
    return {"history_encoding": args.history_encoding, "history_decay": args.history_decay,
            "popularity_weight": args.popularity_weight, "center_representations": args.center_representations,
            "negatives": negatives, "projection_rank": args.projection_rank,
            "choose_start": args.choose_start and args.history_encoding == "items",
            "choose_temperature": args.choose_temperature}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with command_logging("error" if args.quiet else args.log_level):
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """The parsed command, its expected errors printed as one line (see `USER_ERRORS`)."""
    try:
        if args.command == "compare":
            runs = dict(_label_and_dir(item) for item in args.runs)
            text = compare(runs, args.output_dir, args.model)
            print((args.output_dir / "comparison.json").read_text() if args.json else text)
            return 0
        if args.command == "baseline":
            evaluate_baseline(args.method, args.data_dir, args.domain, args.output_dir, args.backbone,
                              args.max_train_users, args.max_eval_users, args.val_users, args.seed, args.max_length,
                              args.full_ranking, args.history_decay, args.temperature, args.popularity_weight)
            return 0
        if args.command == "evaluate":
            # With --json, stdout holds the metrics alone: the lines evaluate prints on the way go to stderr.
            with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
                metrics = evaluate_model(args.model_dir, args.data_dir, args.domain, args.split,
                                         args.max_eval_users, args.val_users, args.seed, args.eval_batch_size,
                                         args.max_length, args.full_ranking, args.rerank_top)
            if args.json:
                print(json.dumps(metrics, indent=2))
            return 0
        if args.command == "recommend":
            history = args.history if args.history is not None else args.history_json
            items, held_out = recommend_from_dir(args.model_dir, args.data_dir, args.domain, history=history,
                                                 item_ids=args.history_ids, user=args.user, top_k=args.top_k,
                                                 exclude_history=not args.include_history, rerank_top=args.rerank_top)
            print(json.dumps([item.to_dict() for item in items], indent=2) if args.json
                  else format_recommendations(items, held_out))
            return 0
        if args.command == "prepare":
            columns = InteractionColumns(args.user_column, args.item_column, args.time_column, args.title_column,
                                         args.items_item_column)
            check_output_dir(args.output_dir, args.overwrite)
            domain = read_interactions(args.interactions, args.items, columns, args.min_interactions,
                                       args.test_fraction, args.split, args.seed, args.encoding, args.delimiter)
            write_domain(domain, args.output_dir)
            print(f"{args.output_dir}: {domain.summary()}")
            return 0
        negatives, batch_size = negatives_and_batch_size(args)
        settings = RunSettings(
            command=args.command, data_dir=args.data_dir, domain=args.target if args.command == "train" else args.domain,
            output_dir=str(args.output_dir), backbone=args.backbone,
            sources=[str(source) for source in getattr(args, "sources", [])],
            max_train_users=args.max_train_users, max_eval_users=args.max_eval_users, val_users=args.val_users,
            epochs=args.epochs, max_steps=args.max_steps, batch_size=batch_size,
            eval_batch_size=args.eval_batch_size, train_negatives=args.train_negatives,
            learning_rate=args.learning_rate, max_length=args.max_length, lora_r=getattr(args, "lora_r", 8),
            lora_alpha=getattr(args, "lora_alpha", 16), patience=args.patience, save_steps=args.save_steps,
            seed=args.seed, beta=getattr(args, "beta", 1.0), gamma=getattr(args, "gamma", 1.0),
            scoring=args.scoring, pooling=args.pooling, train_positions=args.train_positions,
            in_batch_negatives=args.in_batch_negatives, temperature=args.temperature,
            **_dual_settings(args, negatives),
            fusion_learning_rate=getattr(args, "fusion_learning_rate", None),
            normalize_fusion_input=getattr(args, "normalize_fusion_input", False), full_ranking=args.full_ranking,
            rerank_top=args.rerank_top, lr_scheduler=args.lr_scheduler, warmup_steps=args.warmup_steps,
            scale_fusion_input=getattr(args, "scale_fusion_input", False),
            fusion_bound=getattr(args, "fusion_bound", None), stream_dropout=getattr(args, "stream_dropout", True))
        train(settings)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"xcross {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # Every file a command writes is written atomically, so an interrupt leaves none half-written.
        if args.debug:
            raise
        resume = "; rerun the same command to resume from its last checkpoint" if args.command in TRAINING else ""
        print(f"xcross {args.command}: interrupted{resume}.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
