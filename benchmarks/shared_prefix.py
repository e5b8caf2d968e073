"""Shared-prefix scoring against the plain fused forward on a decoder backbone: one user's 30 candidates.

    python -m benchmarks.shared_prefix --quick                                # small random Llama, seconds
    python -m benchmarks.shared_prefix --base models/smollm2-135m-instruct    # SmolLM2-135M (conversion.gguf_to_hf)
    python -m benchmarks.shared_prefix --model-dir runs/smollm2/xcross-tools --domain Tools --users 5

The prompts are random token ids shaped like the Tools domain's decoder prompts under SmolLM2's tokenizer: a
history prefix of `--prefix-tokens` tokens (Tools test users: median 93, everything before the candidate) and
candidates of 12 to 27 tokens (their 10th to 90th percentile), right-padded as the collator pads them, no
truncation. Both ways score the same prompts with the same X-Cross model (n rank-8 adapters with random
non-zero weights), forward only, round-robin within each round (`benchmarks.measure.median_times`). The last line,
`shared-prefix speedup: N.NN x`, is the plain time over the shared-prefix time; the largest score difference
between the two is printed too.

`--model-dir` times the evaluation itself instead (`pipeline.runs.score`, tokenization included) of a trained
X-Cross checkpoint on the first `--users` test users of a domain, with its real prompts (truncated at
`--max-length` like the run's), with and without the shared prefix, and checks that the metrics agree.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from configuration_xcross import PAPER_SCORING
from benchmarks.backbones import BACKBONES, prepare_backbone, write_adapters
from benchmarks.measure import median_times
from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.families import LLAMA_FAMILY
from modeling_xcross.pipeline.candidates import eval_lists_for
from modeling_xcross.pipeline.data import load_domain, split_users
from modeling_xcross.auto_loading import load_trained_model
from modeling_xcross.pipeline.models import collator_for
from modeling_xcross.pipeline.runs import score
from modeling_xcross.pipeline.samples import EvalSamples


def make_prompts(users: int, candidates: int, prefix_tokens: int, candidate_tokens: tuple[int, int],
                 vocab_size: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The same random prompts as the plain forward's full prompts and as `score_shared_prefix`'s arguments."""
    generator = torch.Generator().manual_seed(0)
    prefixes = torch.randint(3, vocab_size, (users, prefix_tokens), generator=generator)
    lengths = torch.randint(candidate_tokens[0], candidate_tokens[1] + 1, (users, candidates), generator=generator)
    continuation = torch.randint(3, vocab_size, (users, candidates, candidate_tokens[1]), generator=generator)
    continuation_mask = (torch.arange(candidate_tokens[1]) < lengths.unsqueeze(-1)).long()
    continuation[continuation_mask == 0] = 0
    plain = {"input_ids": torch.cat([prefixes.unsqueeze(1).expand(-1, candidates, -1), continuation], dim=-1),
             "attention_mask": torch.cat([torch.ones(users, candidates, prefix_tokens, dtype=torch.long),
                                          continuation_mask], dim=-1)}
    shared = {"prefix_input_ids": prefixes, "prefix_attention_mask": torch.ones_like(prefixes),
              "input_ids": continuation, "attention_mask": continuation_mask,
              "prefix_index": torch.arange(users).unsqueeze(1).expand(-1, candidates)}
    return plain, shared


def build_model(args, scratch: Path) -> tuple[XCrossForSequentialRecommendation, int]:
    """X-Cross over `--streams` random adapters of `--base` (a local decoder) or of a benchmark backbone."""
    if args.base:
        base_dir = args.base
        adapters = write_adapters(base_dir, list(LLAMA_FAMILY.default_target_modules), args.streams, scratch)
    else:
        base_dir, adapters, _ = prepare_backbone(args.backbone, args.streams, scratch)
    model = XCrossForSequentialRecommendation.from_adapters(base_dir, adapters, **PAPER_SCORING).eval()
    generator = torch.Generator().manual_seed(0)
    # Fusion heads off zero, so that fusion changes the scores; small, as SmolLM2's hidden states reach 1e4 and larger
    # z compound over its 30 blocks into inf.
    with torch.no_grad():
        for head in model.fusion_heads:
            head.weight.normal_(0.0, 1e-5, generator=generator)
    return model, model.config.base_config.vocab_size


class FullPrompts:
    """A model as `runs.score` sees it without shared-prefix support: it gets the full prompts."""

    def __init__(self, model: XCrossForSequentialRecommendation):
        self.model = model

    def eval(self) -> None:
        self.model.eval()

    def parameters(self):
        return self.model.parameters()  # where `runs.score` sends the inputs

    def __call__(self, **batch):
        return self.model(**batch)


def time_evaluation(args) -> dict[str, float]:
    """`runs.score` of a trained checkpoint on its domain's first test users, plain and on shared prefixes."""
    model, backbone = load_trained_model(Path(args.model_dir))
    domain = load_domain(args.data_dir, args.domain)
    users = split_users(domain, 0, args.seed, max_test_users=args.users)["test"][:args.users]
    with tempfile.TemporaryDirectory() as scratch:
        samples = EvalSamples(domain, eval_lists_for(domain, "test", users, args.seed, Path(scratch) / "lists.json"))
    collator = collator_for(backbone, args.max_length, domain.titles.values(), model.config.scoring)
    metrics = {}

    def run(name, scored_model):
        def job():
            metrics[name] = score(scored_model, collator, samples, args.eval_batch_size)
        return job

    times = median_times({"plain": run("plain", FullPrompts(model)), "shared": run("shared", model)},
                         args.repeats, args.warmup, torch.device("cpu"))
    batch = collator.shared_prefix_batch([samples[index] for index in range(len(samples))])
    return report(f"evaluation of {args.model_dir} on {args.domain}: {len(users)} test users x 30 candidates, "
                  f"--max-length {args.max_length}, {batch['prefix_input_ids'].shape[0] / len(users):.1f} prefixes "
                  f"per user", times, args.repeats,
                  f"MRR {metrics['plain']['mrr']:.4f} and {metrics['shared']['mrr']:.4f}",
                  plain_metrics=metrics["plain"], shared_prefix_metrics=metrics["shared"])


def time_forward(args) -> dict[str, float]:
    """The plain forward and `score_shared_prefix` on the same random prompts."""
    with tempfile.TemporaryDirectory() as scratch:
        model, vocab_size = build_model(args, Path(scratch))
    plain, shared = make_prompts(args.users, args.candidates, args.prefix_tokens, tuple(args.candidate_tokens),
                                 vocab_size)
    with torch.inference_mode():
        difference = (model(**plain).logits - model.score_shared_prefix(**shared).logits).abs().max().item()

    def run(forward, inputs):
        def job():
            with torch.inference_mode():
                forward(**inputs)
        return job

    times = median_times({"plain": run(model, plain), "shared": run(model.score_shared_prefix, shared)},
                         args.repeats, args.warmup, torch.device("cpu"))
    return report(f"{args.base or args.backbone}: n={args.streams}, {args.users} user(s) x {args.candidates} "
                  f"candidates, prefix {args.prefix_tokens} tokens, candidates {args.candidate_tokens[0]}-"
                  f"{args.candidate_tokens[1]} tokens", times, args.repeats,
                  f"max |score difference| {difference:.2e}", max_abs_difference=difference)


def report(setting: str, times: dict[str, float], repeats: int, comparison: str, **results) -> dict:
    """Print the setting, both times and the speedup line; returns them with `results`."""
    speedup = times["plain"] / times["shared"]
    print(f"[shared-prefix] {setting}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, median of {repeats}")
    print(f"plain fused {times['plain']:.4f} s, shared prefix {times['shared']:.4f} s, {comparison}")
    print(f"shared-prefix speedup: {speedup:.2f} x")
    return {"plain_s": times["plain"], "shared_prefix_s": times["shared"], "speedup": speedup, **results}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    decoders = sorted(name for name, (config, _) in BACKBONES.items() if config is not None and "llama" in name)
    parser.add_argument("--backbone", choices=decoders, default="llama", help="A random benchmark decoder.")
    parser.add_argument("--base", help="A local decoder model directory instead, e.g. models/smollm2-135m-instruct.")
    parser.add_argument("--streams", type=int, default=2, help="n, the number of source adapters.")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=30)
    parser.add_argument("--prefix-tokens", type=int, default=93)
    parser.add_argument("--candidate-tokens", type=int, nargs=2, default=(12, 27), metavar=("MIN", "MAX"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice).")
    parser.add_argument("--quick", action="store_true", help="2 repeats after 1 warm-up round.")
    parser.add_argument("--model-dir", help="Time the evaluation of this trained X-Cross checkpoint instead.")
    parser.add_argument("--data-dir", default="../shared/data/amazon")
    parser.add_argument("--domain", default="Tools")
    parser.add_argument("--max-length", type=int, default=160, help="--model-dir: the run's --max-length.")
    parser.add_argument("--eval-batch-size", type=int, default=2, help="--model-dir: users per batch.")
    parser.add_argument("--seed", type=int, default=42, help="--model-dir: the seed of the candidate lists.")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    return time_evaluation(args) if args.model_dir else time_forward(args)

if __name__ == "__main__":
    main()
