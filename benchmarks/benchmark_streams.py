"""Benchmark fused X-Cross against the floor (n x one LoRA model) and every peer way of running n adapters.

    python -m benchmarks.benchmark_streams --quick
    python -m benchmarks.benchmark_streams --backbones minilm llama --streams 1 2 3 4 --rows 30 240 --seq-lens 64 128

Per setting it times a forward (`torch.inference_mode`) and one training step (median of interleaved repeats
after warm-up), measures the peak bytes each allocates and the resident weights of each way, then prints
fused/floor and fused/best-peer and writes `<output>.json` and `<output>.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks.backbones import BACKBONES, prepare_backbone
from benchmarks.measure import median_times, peak_allocated_bytes, resident_bytes
from benchmarks.peers import Batch, Runner, build_runners
from modeling_xcross import load_base_model
from transformers.utils import logging as hf_logging

CANDIDATES = 30
QUICK = {"backbones": ["llama"], "streams": [2], "rows": [30], "seq_lens": [16], "repeats": 2, "no_memory": True}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=sorted(BACKBONES), default=["minilm", "llama"],
                        help="minilm: the real all-MiniLM-L6-v2; llama: a small random Llama (4 layers, d=256); "
                             "tiny-*: toy configs for smoke tests.")
    parser.add_argument("--streams", nargs="+", type=int, default=[1, 2, 3, 4], help="Numbers of adapters n.")
    parser.add_argument("--rows", nargs="+", type=int, default=[30, 240],
                        help=f"Prompts per batch, users x candidates ({CANDIDATES} candidates per user; a multiple "
                             f"of {CANDIDATES}).")
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[64, 128], help="Tokens per prompt.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed repeats per measurement (the median is kept).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed rounds before the repeats.")
    parser.add_argument("--device", default="cpu", help="Torch device, e.g. cpu or cuda (nothing needs a GPU).")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads for the run; 1 is steadier on a machine shared with other jobs.")
    parser.add_argument("--bf16-autocast", action="store_true", help="Run every step under bfloat16 autocast.")
    parser.add_argument("--no-train", action="store_true", help="Time and measure forwards only.")
    parser.add_argument("--no-memory", action="store_true", help="Skip the (slow, profiled) peak-memory passes.")
    parser.add_argument("--in-process", action="store_true",
                        help="Measure every setting in this process (by default each runs in a fresh one, so that "
                             "the allocator state an earlier setting left does not change a later one's timings).")
    parser.add_argument("--quick", action="store_true",
                        help=f"A few seconds: {QUICK}; overrides those options.")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/streams"),
                        help="Writes OUTPUT.json (every measurement) and OUTPUT.md (the tables).")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
    if any(rows % CANDIDATES for rows in args.rows):
        parser.error(f"--rows must be multiples of {CANDIDATES}")
    return args


def make_batch(rows: int, seq_len: int, vocab_size: int, bert_style: bool, device: torch.device) -> Batch:
    """Random prompts; every other user is right-padded from 3/4 of the length, as real prompts differ."""
    generator = torch.Generator().manual_seed(0)
    users = rows // CANDIDATES
    input_ids = torch.randint(3, vocab_size, (users, CANDIDATES, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1::2, :, 3 * seq_len // 4:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids) if bert_style else None
    labels = torch.zeros(users, dtype=torch.long)
    return Batch(*(t.to(device) if t is not None else None for t in (input_ids, attention_mask, token_type_ids,
                                                                        labels)))


def measure_setting(runners: dict[str, Runner], batch: Batch, args, autocast) -> dict[str, dict]:
    """Forward and training-step medians and peaks of every runner on one batch, plus fused with checkpointing."""
    device = torch.device(args.device)
    results = {name: {} for name in runners}

    def forward(runner):
        def job():
            with torch.inference_mode(), autocast():
                runner.forward(batch)
        return job

    def train(runner):
        def job():
            with autocast():
                runner.train_step(batch)
        return job

    for module in (m for runner in runners.values() for m in runner.modules):
        module.eval()
    jobs = {name: forward(runner) for name, runner in runners.items()}
    for name, seconds in median_times(jobs, args.repeats, args.warmup, device).items():
        results[name]["forward_s"] = seconds
    if not args.no_memory:
        for name, job in jobs.items():
            results[name]["forward_peak_bytes"] = peak_allocated_bytes(job, device)
    if args.no_train:
        return results

    trainable = {name: runner for name, runner in runners.items() if runner.training_unsupported is None}
    for name, runner in runners.items():
        if runner.training_unsupported:
            results[name]["train_unsupported"] = runner.training_unsupported
    for module in (m for runner in trainable.values() for m in runner.modules):
        module.train()
    jobs = {name: train(runner) for name, runner in trainable.items()}
    fused = runners["fused"].model
    train_times = median_times(jobs, args.repeats, args.warmup, device)
    peaks = {} if args.no_memory else {name: peak_allocated_bytes(job, device) for name, job in jobs.items()}
    with _checkpointing(fused):  # a model-wide switch, so fused with checkpointing gets its own rounds
        name = "fused_checkpointed"
        train_times[name] = median_times({name: jobs["fused"]}, args.repeats, args.warmup, device)[name]
        if not args.no_memory:
            peaks[name] = peak_allocated_bytes(jobs["fused"], device)
    for name, seconds in train_times.items():
        results.setdefault(name, {})["train_s"] = seconds
    for name, nbytes in peaks.items():
        results[name]["train_peak_bytes"] = nbytes
    return results


@contextlib.contextmanager
def _checkpointing(model):
    model.activation_checkpointing_enable()
    try:
        yield
    finally:
        model.activation_checkpointing_disable()


def weight_budget(runners: dict[str, Runner], base_dir: str, dtype: torch.dtype) -> dict[str, int]:
    """Resident weights of every runner, and what X-Cross must fit in: base + adapters (+5%)."""
    xcross = runners["fused"].model
    adapters = sum(bank.weight.element_size() * rank * (bank.in_features + bank.out_features)
                   for bank in xcross.lora_banks.values() for rank in bank.ranks)
    sizes = {f"resident_{name}": resident_bytes(*runner.modules) for name, runner in runners.items()}
    return {"base_bytes": resident_bytes(load_base_model(base_dir, dtype=dtype)), "adapter_bytes": adapters, **sizes}


def ratios(results: dict[str, dict], key: str) -> dict | None:
    """fused / floor and fused / the fastest peer (the floor is the reference, not a peer)."""
    times = {name: result[key] for name, result in results.items() if key in result}
    peers = {name: t for name, t in times.items() if name not in ("fused", "floor", "fused_checkpointed")}
    if "fused" not in times or not peers:
        return None
    best = min(peers, key=peers.get)
    return {"fused/floor": times["fused"] / times["floor"], "fused/best_peer": times["fused"] / peers[best],
            "best_peer": best}


def measure_one(args, backbone: str, n: int, rows: int, seq_len: int, scratch: Path) -> dict:
    """The record of one setting, measured in this process."""
    device = torch.device(args.device)
    autocast = ((lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16_autocast
                else contextlib.nullcontext)
    base_dir, adapters, vocab_size = prepare_backbone(backbone, n, scratch / backbone)
    runners, skipped = build_runners(base_dir, adapters, torch.float32, device)
    batch = make_batch(rows, seq_len, vocab_size, runners["fused"].model.pooling == "cls", device)
    results = measure_setting(runners, batch, args, autocast)
    return {"backbone": backbone, "n": n, "rows": rows, "seq_len": seq_len, "process": os.getpid(), "results": results,
            "not_applicable": skipped, "weights": weight_budget(runners, base_dir, torch.float32),
            "forward_ratios": ratios(results, "forward_s"), "train_ratios": ratios(results, "train_s")}


def measure_in_child(args, backbone: str, n: int, rows: int, seq_len: int, scratch: Path) -> dict:
    """The record of one setting, measured by this script in a fresh Python process."""
    output = scratch / f"{backbone}-{n}-{rows}-{seq_len}"
    command = [sys.executable, "-m", "benchmarks.benchmark_streams", "--backbones", backbone, "--streams", str(n),
               "--rows", str(rows), "--seq-lens", str(seq_len), "--repeats", str(args.repeats), "--warmup",
               str(args.warmup), "--device", args.device, "--output", str(output)]
    command += ["--threads", str(args.threads)] if args.threads else []
    command += [flag for flag, on in (("--bf16-autocast", args.bf16_autocast), ("--no-train", args.no_train),
                                      ("--no-memory", args.no_memory)) if on]
    repository = Path(__file__).resolve().parents[1]
    environment = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(repository),
                                                                           os.environ.get("PYTHONPATH")]))}
    child = subprocess.run(command, cwd=repository, env=environment, capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"The benchmark of {backbone}, n={n}, {rows} rows, T={seq_len} failed "
                           f"(exit {child.returncode}):\n{child.stderr[-3000:]}")
    return json.loads(output.with_suffix(".json").read_text())["records"][0]


def run(args) -> list[dict]:
    """Measure every setting. With more than one, each runs in a fresh process (unless `--in-process`): the C
    allocator keeps the shape its heap took under earlier settings' large blocks, which moved later settings'
    ratios by up to 15%."""
    grid = list(itertools.product(args.backbones, args.streams, args.rows, args.seq_lens))
    measure = measure_one if len(grid) == 1 or args.in_process else measure_in_child
    records = []
    progress = tqdm(total=len(grid), desc="settings", unit="setting")
    with progress, tempfile.TemporaryDirectory() as scratch:
        for setting in grid:
            records.append(measure(args, *setting, Path(scratch)))
            progress.write(summary_line(records[-1]))
            progress.update()
            write_report(records, args)
    return records


def summary_line(record: dict) -> str:
    def fmt(found):
        return "n/a" if found is None else (f"fused/floor {found['fused/floor']:.3f}, fused/best-peer "
                                             f"{found['fused/best_peer']:.3f} ({found['best_peer']})")
    return (f"{record['backbone']} n={record['n']} rows={record['rows']} T={record['seq_len']} | forward: "
            f"{fmt(record['forward_ratios'])} | train: {fmt(record['train_ratios'])}")


METHODS = ("fused", "floor", "naive_set_adapter_loop", "separate_models", "mixed_batch", "xlora")


def markdown(records: list[dict], args) -> str:
    """Three tables: forward ms, training-step ms, and memory (MiB), one row per setting."""
    def cell(record, method, key, scale, digits=1):
        result = record["results"].get(method, {})
        if key in result:
            return f"{result[key] * scale:.{digits}f}"
        return "n/a" if method in record["not_applicable"] or "train_unsupported" in result else "-"

    def ratio_cells(found):
        cells = ["-", "-"] if found is None else [f"{found[key]:.3f}" for key in ("fused/floor", "fused/best_peer")]
        return f" | {cells[0]} | {cells[1]} |"

    head = "| backbone | n | rows | T | " + " | ".join(METHODS)
    lines = [f"Command: `python -m benchmarks.benchmark_streams {' '.join(args.argv)}`".rstrip(), "",
             f"Machine: {machine_line(args)}", "",
             "### Forward (ms, median)", "", head + " | fused/floor | fused/best peer |",
             "|" + " --- |" * (6 + len(METHODS))]
    for r in records:
        lines.append(f"| {r['backbone']} | {r['n']} | {r['rows']} | {r['seq_len']} | "
                     + " | ".join(cell(r, m, "forward_s", 1e3) for m in METHODS)
                     + ratio_cells(r["forward_ratios"]))
    if not args.no_train:
        lines += ["", "### Training step (ms, median)", "", head + " | fused, checkpointed | fused/floor | "
                  "fused/best peer |", "|" + " --- |" * (7 + len(METHODS))]
        for r in records:
            lines.append(f"| {r['backbone']} | {r['n']} | {r['rows']} | {r['seq_len']} | "
                         + " | ".join(cell(r, m, "train_s", 1e3) for m in (*METHODS, "fused_checkpointed"))
                         + ratio_cells(r["train_ratios"]))
    if not args.no_memory:
        mib = 1 / 2**20
        lines += ["", "### Peak allocated during the step (MiB): forward / training step", "",
                  head + " | fused, checkpointed |", "|" + " --- |" * (5 + len(METHODS))]
        for r in records:
            pairs = [f"{cell(r, m, 'forward_peak_bytes', mib)} / {cell(r, m, 'train_peak_bytes', mib)}"
                     for m in METHODS]
            lines.append(f"| {r['backbone']} | {r['n']} | {r['rows']} | {r['seq_len']} | " + " | ".join(pairs)
                         + f" | {cell(r, 'fused_checkpointed', 'train_peak_bytes', mib)} |")
    lines += ["", "### Resident weights (MiB)", "", "| backbone | n | base | adapters | base + adapters | "
              + " | ".join(METHODS) + " | fused / (base + adapters) |", "|" + " --- |" * (6 + len(METHODS))]
    for r in {(r["backbone"], r["n"]): r for r in records}.values():
        w, mib = r["weights"], 1 / 2**20
        budget = w["base_bytes"] + w["adapter_bytes"]
        sizes = [f"{w[f'resident_{m}'] * mib:.1f}" if f"resident_{m}" in w else "n/a" for m in METHODS]
        lines.append(f"| {r['backbone']} | {r['n']} | {w['base_bytes'] * mib:.1f} | {w['adapter_bytes'] * mib:.2f} | "
                     f"{budget * mib:.1f} | " + " | ".join(sizes) + f" | {w['resident_fused'] / budget:.3f} |")
    notes = {m: why for r in records for m, why in r["not_applicable"].items()}
    notes |= {m: res["train_unsupported"] for r in records for m, res in r["results"].items()
              if "train_unsupported" in res}
    if notes:
        lines += ["", "Not applicable:", ""] + [f"- `{m}`: {why}" for m, why in notes.items()]
    return "\n".join(lines) + "\n"


def machine_facts(args) -> dict:
    import peft
    import transformers

    return {"date": args.started, "platform": platform.platform(), "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "device": args.device, "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


def machine_line(args) -> str:
    facts = machine_facts(args)
    return (f"{facts['date']}, {facts['platform']}, {facts['cpus']} CPUs, {facts['threads']} torch threads, "
            f"device {facts['device']}; torch {facts['torch']}, transformers {facts['transformers']}, "
            f"peft {facts['peft']}")


def write_report(records: list[dict], args) -> None:
    """Rewritten after every setting, so that a long grid cut short keeps what it measured."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_facts(args)
    report = {"machine": machine, "options": {k: v for k, v in vars(args).items() if k != "output"},
              "records": records}
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    args.output.with_suffix(".md").write_text(markdown(records, args))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    records = run(args)
    print(f"wrote {args.output.with_suffix('.json')} and {args.output.with_suffix('.md')}")
    return records


if __name__ == "__main__":
    main()
