"""Assemble X-Cross on all-MiniLM-L6-v2 from two PEFT LoRA adapters, score candidates, save and reload it.

The two adapters here are freshly initialised stand-ins (run `xcross train-adapter` for real source adapters);
the point is the API: from_adapters -> forward -> save_pretrained -> AutoModel.from_pretrained.

    python examples/quickstart.py --output-dir runs/quickstart
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel, AutoTokenizer

from configuration_xcross import PAPER_SCORING
from modeling_xcross import DEFAULT_BACKBONE, XCrossForSequentialRecommendation, resolve_model_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/quickstart"), help="where to write adapters "
                        "and the X-Cross checkpoint (default: runs/quickstart)")
    args = parser.parse_args()

    base_path = resolve_model_path(DEFAULT_BACKBONE)
    adapters = {}
    for seed, name in ((1, "toys"), (2, "sports")):
        torch.manual_seed(seed)
        lora = LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"], init_lora_weights=False)
        get_peft_model(AutoModel.from_pretrained(base_path), lora).save_pretrained(args.output_dir / name)
        adapters[name] = args.output_dir / name

    model = XCrossForSequentialRecommendation.from_adapters(DEFAULT_BACKBONE, adapters, **PAPER_SCORING).eval()
    size = model.integrator_size(lora_rank=8)
    print(f"adapters: {model.adapter_names}; trainable parameters: {model.num_parameters(only_trainable=True):,}; "
          f"fusion weights {size.fusion_weights:,} = {size.ratio:.0%} of a rank-8 query/value LoRA "
          f"({size.lora_parameters:,})")

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    history = "LEGO City Police Station; Hot Wheels Track Builder; Nerf Elite Blaster"
    candidates = ["Melissa & Doug Wooden Puzzle", "DeWalt 20V Cordless Drill", "Coleman Camping Tent"]
    batch = tokenizer([history] * len(candidates), candidates, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**{key: value[None] for key, value in batch.items()}).logits[0]
    for candidate, score in sorted(zip(candidates, logits.tolist()), key=lambda pair: -pair[1]):
        print(f"{score:+.4f}  {candidate}")

    model.save_pretrained(args.output_dir / "xcross")
    reloaded = AutoModel.from_pretrained(args.output_dir / "xcross")
    with torch.no_grad():
        same = torch.equal(reloaded(**{key: value[None] for key, value in batch.items()}).logits[0], logits)
    files = sorted((args.output_dir / "xcross").iterdir())
    print("saved:", ", ".join(f"{path.name} ({path.stat().st_size / 1024:.0f} KiB)" for path in files),
          f"- reloaded with identical scores: {same}")


if __name__ == "__main__":
    main()
