"""Tokenised datasets cached by content: the same file, tokenizer, max_seq_length and code load in milliseconds.

Key = sha256 of the JSONL bytes + the tokenizer's files (vocabulary, merges, chat template) + max_seq_length + the
source of data.py and core/chat.py + the transformers version (so a change to tokenisation invalidates every
entry). Entries are written to a temporary dir and renamed into place, so a crash or a concurrent worker never
leaves a half entry.
The oldest entries beyond MAX_ENTRIES are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import transformers
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from core import chat
from core.enums import DatasetFormat
from worker.training import data
from worker.training.data import TokenizedData

MAX_ENTRIES = 32
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def cache_key(path: Path, tokenizer_dir: Path, max_seq_length: int) -> str:
    """Content hash of everything the tokenised result depends on."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    for name in _TOKENIZER_FILES:
        file = tokenizer_dir / name
        if file.is_file():
            h.update(name.encode() + file.read_bytes())
    h.update(f"max_seq_length={max_seq_length}".encode())
    h.update(Path(data.__file__).read_bytes())
    h.update(Path(chat.__file__).read_bytes())  # the normal form records are rendered in (text parts, tool calls)
    h.update(f"transformers={transformers.__version__}".encode())  # its tokenizers and chat templating
    return h.hexdigest()[:32]


def load_cached(
    path: Path, tokenizer: PreTrainedTokenizerBase, tokenizer_dir: Path, max_seq_length: int, root: Path
) -> tuple[TokenizedData, bool]:
    """The tokenised dataset (from the cache when present) and whether it was a cache hit."""
    entry = root / cache_key(path, tokenizer_dir, max_seq_length)
    if (entry / "meta.json").is_file():
        try:
            meta = json.loads((entry / "meta.json").read_text())
            os.utime(entry)  # recently used: trimmed last
            dataset = Dataset.load_from_disk(str(entry / "dataset"))
            return TokenizedData(
                dataset,
                DatasetFormat(meta["format"]),
                meta["tokens"],
                meta["loss_tokens"],
                meta["truncated"],
                meta["dropped"],
                meta["longest"],
            ), True
        except (OSError, ValueError, KeyError):
            shutil.rmtree(entry, ignore_errors=True)  # unreadable: rebuild it
    result = data.load_dataset(path, tokenizer, max_seq_length)
    _store(result, entry)
    _trim(root)
    return result, False


def _store(result: TokenizedData, entry: Path) -> None:
    tmp = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}")
    try:
        tmp.mkdir(parents=True)
        result.dataset.save_to_disk(str(tmp / "dataset"))
        meta = {
            "format": result.format.value,
            "tokens": result.tokens,
            "loss_tokens": result.loss_tokens,
            "truncated": result.truncated,
            "dropped": result.dropped,
            "longest": result.longest,
            "created": time.time(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        os.rename(tmp, entry)
    except OSError:
        pass  # another worker stored it first, or the disk is full: the cache is only an optimisation
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _trim(root: Path) -> None:
    entries = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.stat().st_mtime
    )
    for old in entries[:-MAX_ENTRIES]:
        shutil.rmtree(old, ignore_errors=True)
