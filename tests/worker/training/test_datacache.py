"""The tokenised-dataset cache: a second job on the same file, tokenizer and max_seq_length skips tokenisation."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from tests.worker.training.helpers import RecordingReporter, SpecFactory, chat_rows, write_jsonl
from worker.training import TrainingPaths, run_training
from worker.training.datacache import load_cached
from worker.training.interfaces import TrainingOptions


def test_second_run_hits_the_cache_and_trains_the_same(
    tiny_model: Path, tmp_path: Path, make_spec: SpecFactory
) -> None:
    options = TrainingOptions(data_cache_dir=tmp_path / "cache")
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8))
    first, second = RecordingReporter(), RecordingReporter()

    for out, reporter in ((tmp_path / "a", first), (tmp_path / "b", second)):
        paths = TrainingPaths(tiny_model, train, None, out)
        run_training(make_spec(epochs=1), paths, reporter, device="cpu", options=options)

    assert first.event_data("Prepared data")["data_cache_hit"] is False
    assert second.event_data("Prepared data")["data_cache_hit"] is True
    assert second.event_data("Prepared data")["data_prep_s"] >= 0
    assert second.event_data("Loaded") == first.event_data("Loaded")  # same examples, tokens, loss tokens
    assert second.steps[-1].tokens == first.steps[-1].tokens


def test_changed_file_or_max_length_misses(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4))
    root = tmp_path / "cache"

    cached, hit = load_cached(train, tokenizer, tiny_model, 64, root)
    again, hit_again = load_cached(train, tokenizer, tiny_model, 64, root)
    _, hit_other_length = load_cached(train, tokenizer, tiny_model, 48, root)
    write_jsonl(train, chat_rows(5))
    changed, hit_changed = load_cached(train, tokenizer, tiny_model, 64, root)

    assert (hit, hit_again, hit_other_length, hit_changed) == (False, True, False, False)
    assert again.dataset["input_ids"] == cached.dataset["input_ids"]
    assert len(changed.dataset) == 5
