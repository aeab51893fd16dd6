"""JSONL training file → `datasets.Dataset` of `input_ids` + `labels` (-100 where no loss is taken).

We tokenize ourselves rather than let TRL do it: TRL's assistant-only loss needs `{% generation %}` markers
that real chat templates (SmolLM2's, Llama's) lack. Instead each assistant turn is located as a character
span of the rendered conversation (render the turns before it with the generation prompt, then up to and
including it), and every token overlapping a span is trained on. SFTTrainer uses a `labels` column as is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from core.chat import normalize_messages, normalize_tools
from core.datasets import detect_format
from core.enums import DatasetFormat
from worker.training.errors import TrainingError

IGNORE_INDEX = -100  # label of tokens the loss skips (PyTorch's cross-entropy default)

Span = tuple[int, int]  # [start, end) character offsets into the rendered text


@dataclass
class TokenizedData:
    """A tokenized file and what happened to it on the way."""

    dataset: Dataset
    format: DatasetFormat
    tokens: int  # input tokens after truncation
    loss_tokens: int  # of those, tokens the loss is taken on
    truncated: int  # examples cut to max_seq_length
    dropped: int  # examples left with no loss token after truncation
    longest: int = 0  # tokens of the longest example before truncation


def read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The file's records with their line numbers, skipping blank lines; a bad line is the user's error."""
    records: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError("invalid_dataset", f"{path.name} line {number}: not JSON ({exc.msg}).") from exc
            if not isinstance(record, dict):
                raise TrainingError("invalid_dataset", f"{path.name} line {number}: expected a JSON object.")
            records.append((number, record))
    if not records:
        raise TrainingError("invalid_dataset", f"{path.name} has no examples.")
    return records


def tokenize_example(
    record: dict[str, Any], fmt: DatasetFormat, tokenizer: PreTrainedTokenizerBase
) -> dict[str, list[int]]:
    """One record → untruncated `input_ids` and `labels` (IGNORE_INDEX off the trained part)."""
    tools = normalize_tools(record)
    if fmt == DatasetFormat.CHAT:
        return _tokenize_chat(tokenizer, normalize_messages(record["messages"]), tools, first_trainable=0)
    if fmt == DatasetFormat.PROMPT_COMPLETION:
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, list) and isinstance(completion, list):  # conversational prompt-completion
            messages = normalize_messages(prompt + completion)
            return _tokenize_chat(tokenizer, messages, tools, first_trainable=len(prompt))
        return _tokenize_plain(tokenizer, str(prompt) + str(completion), loss_from=len(str(prompt)))
    return _tokenize_plain(tokenizer, str(record["text"]), loss_from=0)


def load_dataset(path: Path, tokenizer: PreTrainedTokenizerBase, max_seq_length: int) -> TokenizedData:
    """Read, detect the format (from the first record), tokenize and truncate a JSONL file."""
    records = read_jsonl(path)
    fmt = detect_format(records[0][1])
    if fmt is None:
        raise TrainingError(
            "invalid_dataset", f"{path.name}: records need 'messages', 'prompt'+'completion' or 'text'."
        )
    if fmt == DatasetFormat.CHAT and not tokenizer.chat_template:
        raise TrainingError(
            "invalid_dataset", "The base model has no chat template; use prompt/completion or text examples."
        )
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    tokens = loss_tokens = truncated = dropped = longest = 0
    for number, record in records:
        try:
            example = tokenize_example(record, fmt, tokenizer)
        except Exception as exc:  # noqa: BLE001 - a template's TemplateError as much as a TypeError: the line's fault
            raise TrainingError(
                "invalid_dataset", f"{path.name} line {number} cannot be rendered or tokenized: {exc!r}"
            ) from exc
        longest = max(longest, len(example["input_ids"]))
        if len(example["input_ids"]) > max_seq_length:
            truncated += 1
            example = {k: v[:max_seq_length] for k, v in example.items()}
        trained = sum(label != IGNORE_INDEX for label in example["labels"])
        if trained == 0:
            dropped += 1  # nothing to learn from (e.g. the prompt alone fills max_seq_length)
            continue
        columns["input_ids"].append(example["input_ids"])
        columns["labels"].append(example["labels"])
        tokens += len(example["input_ids"])
        loss_tokens += trained
    if not columns["input_ids"]:
        raise TrainingError(
            "dataset_too_long",
            f"No example of {path.name} keeps a trainable token within max_seq_length={max_seq_length}; "
            "raise training.max_seq_length or shorten the prompts.",
        )
    return TokenizedData(Dataset.from_dict(columns), fmt, tokens, loss_tokens, truncated, dropped, longest)


def _tokenize_plain(tokenizer: PreTrainedTokenizerBase, text: str, *, loss_from: int) -> dict[str, list[int]]:
    """Tokenize `text` + EOS; train on tokens ending past character `loss_from` (and the EOS)."""
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [
        token if end > start and end > loss_from else IGNORE_INDEX
        for token, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        # EOS teaches the model to stop after a completion (or a document).
        ids.append(eos)
        labels.append(eos)
    return {"input_ids": ids, "labels": labels}


def _tokenize_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: Any,
    *,
    first_trainable: int,
) -> dict[str, list[int]]:
    """Render with the chat template; train on assistant turns from message `first_trainable` on."""
    text = _render(tokenizer, messages, tools, add_generation_prompt=False)
    spans = _assistant_spans(tokenizer, messages, tools, text, first_trainable)
    # The template already wrote any BOS it wants; adding special tokens again would double it.
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    labels = [
        token if end > start and _overlaps(start, end, spans) else IGNORE_INDEX
        for token, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
    ]
    return {"input_ids": ids, "labels": labels}


def _assistant_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: Any,
    text: str,
    first_trainable: int,
) -> list[Span]:
    """Character spans of the trained assistant turns in `text`, each with its end-of-turn marker.

    A turn with OpenAI's `weight: 0` is context, not a target: it is located (so a later turn with the same
    words is not mistaken for it) but not trained."""
    spans: list[Span] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message.get("role") != "assistant" or i < first_trainable:
            continue
        span = _span_by_prefix(tokenizer, messages, tools, text, i, cursor) or _span_by_search(
            text, message.get("content"), cursor
        )
        if span is not None:
            if message.get("weight", 1) != 0:
                spans.append(span)
            cursor = span[1]
    return spans


def _span_by_prefix(
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, Any]],
    tools: Any,
    text: str,
    index: int,
    cursor: int,
) -> Span | None:
    """Turn `index` as (render of earlier turns + generation prompt, render up to it), if the template nests."""
    try:
        before = _render(tokenizer, messages[:index], tools, add_generation_prompt=True)
        upto = _render(tokenizer, messages[: index + 1], tools, add_generation_prompt=False)
    except Exception:  # noqa: BLE001 - some templates reject partial conversations; fall back to search
        return None
    # Templates that rewrite earlier turns (e.g. strip past reasoning) do not nest; search instead.
    if not (text.startswith(upto) and upto.startswith(before)) or len(before) < cursor:
        return None
    return (len(before), len(upto))


def _span_by_search(text: str, content: Any, cursor: int) -> Span | None:
    """Fallback: the turn's content found verbatim after `cursor` (its end-of-turn marker is not trained)."""
    if not isinstance(content, str) or not content:
        return None
    start = text.find(content, cursor)
    return None if start < 0 else (start, start + len(content))


def _render(
    tokenizer: PreTrainedTokenizerBase, messages: Sequence[dict[str, Any]], tools: Any, *, add_generation_prompt: bool
) -> str:
    """The chat template's text for `messages`."""
    rendered = tokenizer.apply_chat_template(
        list(messages), tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return str(rendered)


def _overlaps(start: int, end: int, spans: list[Span]) -> bool:
    """Whether the token [start, end) shares a character with any span."""
    return any(start < span_end and end > span_start for span_start, span_end in spans)
