"""Export the adapter bank of an X-Cross checkpoint as standard PEFT LoRA adapters, and optionally publish them.

    python -m conversion.export_adapters --model runs/xcross --output-dir runs/adapters [--push-to org/xcross-]

Each adapter lands in OUTPUT_DIR/<name> (adapter_config.json + adapter_model.safetensors), loadable with
`PeftModel.from_pretrained(base, dir)`; with --push-to PREFIX it is also uploaded to the Hub repo PREFIX<name>.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from huggingface_hub import HfApi

from modeling_xcross import XCrossForSequentialRecommendation
from modeling_xcross.peft_export import export_adapters


def export_and_push(model_path: str, output_dir: Path, push_prefix: str | None = None) -> dict[str, str]:
    """Write every bank adapter to `output_dir/<name>`; with `push_prefix`, upload each and return its commit."""
    model = XCrossForSequentialRecommendation.from_pretrained(model_path)
    directories = export_adapters(model, output_dir)
    if push_prefix is None:
        return {name: str(directory) for name, directory in directories.items()}
    api = HfApi()
    commits = {}
    for name, directory in directories.items():
        api.create_repo(f"{push_prefix}{name}", exist_ok=True)
        commits[name] = api.upload_folder(repo_id=f"{push_prefix}{name}", folder_path=directory).oid
    return commits


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="X-Cross checkpoint directory or Hub repo id")
    parser.add_argument("--output-dir", type=Path, required=True, help="where to write one PEFT dir per adapter")
    parser.add_argument("--push-to", metavar="PREFIX", help="also upload adapter NAME to the Hub repo PREFIX+NAME")
    args = parser.parse_args(argv)
    for name, where in export_and_push(args.model, args.output_dir, args.push_to).items():
        print(f"{name}: {where}")


if __name__ == "__main__":
    main()
