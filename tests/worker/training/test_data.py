"""JSONL → tokenized examples: format detection, loss masks, truncation, bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from core.enums import DatasetFormat
from tests.support.chat_records import CHAT, PARTS, TOOLS
from tests.worker.training.helpers import write_jsonl
from worker.training.data import IGNORE_INDEX, load_dataset, tokenize_example
from worker.training.errors import TrainingError


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny_model)


def trained_text(tokenizer: PreTrainedTokenizerBase, example: dict[str, list[int]]) -> str:
    """The decoded tokens the loss is taken on."""
    kept = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != IGNORE_INDEX]
    return tokenizer.decode(kept)


def masked_text(tokenizer: PreTrainedTokenizerBase, example: dict[str, list[int]]) -> str:
    """The decoded tokens the loss skips."""
    kept = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label == IGNORE_INDEX]
    return tokenizer.decode(kept)


def test_chat_loss_is_only_on_assistant_turns(tokenizer: PreTrainedTokenizerBase) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "assistant", "content": "Rome."},
        ]
    }
    example = tokenize_example(record, DatasetFormat.CHAT, tokenizer)

    # Both answers and their end-of-turn markers are trained; nothing else is.
    assert trained_text(tokenizer, example) == "Paris.<|im_end|>\nRome.<|im_end|>\n"
    masked = masked_text(tokenizer, example)
    for prompt_part in ("You are terse.", "Capital of France?", "And of Italy?", "<|im_start|>assistant\n"):
        assert prompt_part in masked
    assert "Paris" not in masked and "Rome" not in masked
    # The rendered conversation is exactly the chat template's text, tokenized once.
    rendered = tokenizer.apply_chat_template(record["messages"], tokenize=False)
    assert tokenizer.decode(example["input_ids"]) == rendered


def test_chat_mask_falls_back_when_template_rewrites_history(tokenizer: PreTrainedTokenizerBase) -> None:
    # A template that renders the last turn differently, so partial renders are not prefixes of the whole.
    rewriting = tokenizer.chat_template.replace(
        "message['content']", "(message['content'] + (' [last]' if loop.last else ''))"
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path, chat_template=rewriting)
    record = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]}

    example = tokenize_example(record, DatasetFormat.CHAT, tokenizer)

    assert trained_text(tokenizer, example) == "Hello there"


def test_prompt_completion_loss_is_only_on_completion(tokenizer: PreTrainedTokenizerBase) -> None:
    record = {"prompt": "Q: What is the capital of France?\nA:", "completion": " Paris."}

    example = tokenize_example(record, DatasetFormat.PROMPT_COMPLETION, tokenizer)

    assert trained_text(tokenizer, example) == " Paris.<|im_end|>"
    assert masked_text(tokenizer, example) == "Q: What is the capital of France?\nA:"


def test_conversational_prompt_completion_trains_on_completion_turns(tokenizer: PreTrainedTokenizerBase) -> None:
    record = {
        "prompt": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hey"},
            {"role": "user", "content": "Bye"},
        ],
        "completion": [{"role": "assistant", "content": "Goodbye"}],
    }

    example = tokenize_example(record, DatasetFormat.PROMPT_COMPLETION, tokenizer)

    assert trained_text(tokenizer, example) == "Goodbye<|im_end|>\n"


def test_text_loss_is_on_every_token(tokenizer: PreTrainedTokenizerBase) -> None:
    example = tokenize_example({"text": "The quick brown fox."}, DatasetFormat.TEXT, tokenizer)

    assert example["labels"] == example["input_ids"]
    assert tokenizer.decode(example["input_ids"]) == "The quick brown fox.<|im_end|>"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}], DatasetFormat.CHAT),
        ([{"prompt": "a", "completion": "b"}], DatasetFormat.PROMPT_COMPLETION),
        ([{"text": "a b"}], DatasetFormat.TEXT),
    ],
)
def test_load_dataset_detects_format(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]], expected: DatasetFormat
) -> None:
    data = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows * 3), tokenizer, max_seq_length=64)

    assert data.format == expected
    assert len(data.dataset) == 3
    assert set(data.dataset.column_names) == {"input_ids", "labels"}


def test_long_examples_are_truncated_and_prompt_only_ones_dropped(
    tmp_path: Path, tokenizer: PreTrainedTokenizerBase
) -> None:
    rows = [
        {"prompt": "short", "completion": " answer " * 40},  # truncated, still trains on the kept answer
        {"prompt": "long prompt " * 40, "completion": " answer"},  # the prompt fills the window: dropped
    ]

    data = load_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer, max_seq_length=16)

    assert (data.truncated, data.dropped, len(data.dataset)) == (2, 1, 1)
    assert all(len(ids) <= 16 for ids in data.dataset["input_ids"])


def test_only_prompt_examples_fail_as_dataset_too_long(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    rows = [{"prompt": "long prompt " * 40, "completion": " answer"}]

    with pytest.raises(TrainingError) as err:
        load_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer, max_seq_length=16)

    assert err.value.code == "dataset_too_long"


def test_bad_json_line_names_the_line(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n', encoding="utf-8")

    with pytest.raises(TrainingError) as err:
        load_dataset(path, tokenizer, max_seq_length=64)

    assert err.value.code == "invalid_dataset"
    assert "line 2" in err.value.message


def test_chat_data_needs_a_chat_template(tmp_path: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path, chat_template=None)
    plain.chat_template = None
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]

    with pytest.raises(TrainingError) as err:
        load_dataset(write_jsonl(tmp_path / "d.jsonl", rows), plain, max_seq_length=64)

    assert err.value.code == "invalid_dataset"


def test_weight_0_assistant_turns_are_context_not_targets(tokenizer: PreTrainedTokenizerBase) -> None:
    turns = [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Lyon.", "weight": 0},
        {"role": "user", "content": "Really?"},
        {"role": "assistant", "content": "Paris.", "weight": 1},
    ]
    weighted = tokenize_example({"messages": turns}, DatasetFormat.CHAT, tokenizer)
    unweighted = tokenize_example(
        {"messages": [{k: v for k, v in t.items() if k != "weight"} for t in turns]}, DatasetFormat.CHAT, tokenizer
    )

    assert trained_text(tokenizer, weighted) == "Paris.<|im_end|>\n"
    assert "Lyon." in masked_text(tokenizer, weighted)  # still in the context the model sees
    assert weighted["input_ids"] == unweighted["input_ids"]
    loss_tokens = [sum(label != IGNORE_INDEX for label in e["labels"]) for e in (weighted, unweighted)]
    assert 0 < loss_tokens[0] < loss_tokens[1]


def test_weight_0_turn_with_the_same_words_as_a_trained_one_is_still_masked(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    rewriting = tokenizer.chat_template.replace(  # a template that forces the search fallback
        "message['content']", "(message['content'] + (' [last]' if loop.last else ''))"
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path, chat_template=rewriting)
    turns = [
        {"role": "user", "content": "Say it"},
        {"role": "assistant", "content": "Paris", "weight": 0},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Paris"},
    ]

    example = tokenize_example({"messages": turns}, DatasetFormat.CHAT, tokenizer)

    assert trained_text(tokenizer, example) == "Paris"
    assert "Paris" in masked_text(tokenizer, example)


def test_text_content_parts_train_as_their_joined_string(tokenizer: PreTrainedTokenizerBase) -> None:
    assert tokenize_example(PARTS, DatasetFormat.CHAT, tokenizer) == tokenize_example(
        CHAT, DatasetFormat.CHAT, tokenizer
    )


def test_tool_calls_and_answers_are_trained_tool_results_are_context(tiny_tools_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_tools_model)

    example = tokenize_example(TOOLS, DatasetFormat.CHAT, tokenizer)

    trained = trained_text(tokenizer, example)
    assert trained == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n<|im_end|>\n'
        "It is 18C and sunny.<|im_end|>\n"
    )
    masked = masked_text(tokenizer, example)
    assert "18C sunny" in masked and '"name": "get_weather", "parameters"' in masked  # results and schemas


def test_a_line_the_template_cannot_render_is_the_users_error_with_its_line_number(
    tmp_path: Path, tiny_model: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)  # its template needs content on every message
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    path = write_jsonl(tmp_path / "d.jsonl", rows + [{"messages": [{"role": "assistant", "tool_calls": [call]}]}])
    path.write_text(path.read_text().replace("\n", "\n\n", 1))  # a blank line: line numbers are the file's

    with pytest.raises(TrainingError) as err:
        load_dataset(path, tokenizer, max_seq_length=64)

    assert err.value.code == "invalid_dataset" and err.value.side == "user"
    assert err.value.message.startswith("d.jsonl line 3 cannot be rendered or tokenized: UndefinedError(")
