"""Fused X-Cross forward time against the floor for several CPU pass sizes (`cpu_pass_bytes`), with page faults.

    python -m benchmarks.pass_size --backbone minilm --streams 3 --rows 30 --pass-mib 2 4 8 16 0

On the CPU the model runs the n stacked streams through the blocks in passes whose widest activation stays within
`cpu_pass_bytes` (0 here: one pass for the whole batch). This prints, per pass size, the median forward time, its
ratio to the floor and the minor page faults per forward (glibc maps large blocks afresh and the kernel zeroes
their pages; small passes reuse memory), so the default can be checked on another machine.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import torch

from benchmarks.backbones import BACKBONES, prepare_backbone
from benchmarks.benchmark_streams import make_batch
from benchmarks.measure import median_times
from benchmarks.peers import build_runners


def minor_faults(job, calls: int = 3) -> float:
    """Minor page faults of this process per call of `job`."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        job()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="minilm")
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--pass-mib", nargs="+", type=float, default=[2, 4, 8, 16, 0],
                        help="cpu_pass_bytes values in MiB; 0 runs the whole batch in one pass.")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        base_dir, adapters, vocab_size = prepare_backbone(args.backbone, args.streams, Path(scratch))
        runners, _ = build_runners(base_dir, adapters, torch.float32, torch.device("cpu"))
    fused, floor = runners["fused"], runners["floor"]
    batch = make_batch(args.rows, args.seq_len, vocab_size, fused.model.pooling == "cls", torch.device("cpu"))

    def forward(runner, pass_mib=None):
        def job():
            if pass_mib is not None:
                fused.model.cpu_pass_bytes = int(pass_mib * 2**20) if pass_mib else None
            with torch.inference_mode():
                runner.forward(batch)
        return job

    jobs = {"floor": forward(floor)} | {f"fused, {mib:g} MiB passes" if mib else "fused, one pass": forward(fused, mib)
                                        for mib in args.pass_mib}
    times = median_times(jobs, args.repeats, warmup=1, device=torch.device("cpu"))
    results = {name: {"forward_s": times[name], "minor_faults": minor_faults(job)} for name, job in jobs.items()}
    print(f"{args.backbone}, n={args.streams}, {args.rows} rows, T={args.seq_len}, {torch.get_num_threads()} threads")
    for name, result in results.items():
        print(f"{name:24s} {1e3 * result['forward_s']:8.1f} ms  x{result['forward_s'] / times['floor']:.3f} floor  "
              f"{result['minor_faults']:9.0f} minor faults / forward")
    return results


if __name__ == "__main__":
    main()
