"""The OOM back-off on a real TRL trainer: the failed attempt's memory is gone before the retry, an OOM in the
backward does not count the step's tokens twice, and releasing the back-off lets the model be freed."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
from trl import SFTConfig, SFTTrainer

from worker.training.backoff import OomBackoff

ROWS = 8  # one optimizer step's micro-batch; the hooks below fail any micro-batch of more than FITS rows
FITS = 2


def make_trainer(tiny_model: Path, out: Path, steps: int = 2) -> SFTTrainer:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    ids = [[10 + (7 * i + j) % 400 for j in range(20 + i)] for i in range(ROWS * steps)]
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=ROWS,
        max_steps=steps,
        logging_steps=1,
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        max_length=64,
        disable_tqdm=True,
        seed=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"input_ids": ids}),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def last_layer(trainer: SFTTrainer) -> torch.nn.Module:
    return trainer.model.base_model.model.model.layers[-1]  # type: ignore[no-any-return]


def hidden_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def test_memory_of_a_step_that_ran_out_deep_in_the_forward_is_freed_before_the_retry(
    tiny_model: Path, tmp_path: Path
) -> None:
    trainer = make_trainer(tiny_model, tmp_path)
    events: list[tuple[str, dict[str, Any]]] = []
    OomBackoff(trainer, lambda message, data: events.append((message, data)))
    failed: list[weakref.ref[torch.Tensor]] = []
    alive_at_retry: list[bool] = []

    def fail_deep(module: torch.nn.Module, args: Any, output: Any) -> None:
        hidden = hidden_of(output)
        if module.training and hidden.shape[0] > FITS:
            failed.append(weakref.ref(hidden))  # an activation of the last layer: the whole forward is behind it
            raise torch.OutOfMemoryError("injected in the last decoder layer")

    def note_retry(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        if failed:
            alive_at_retry.append(failed[-1]() is not None)

    last_layer(trainer).register_forward_hook(fail_deep)
    trainer.model.register_forward_pre_hook(note_retry, with_kwargs=True)

    trainer.train()

    assert failed and alive_at_retry, "the injected OOM never happened"
    assert not any(alive_at_retry), "a forward-time tensor of the failed attempt was still allocated at the retry"
    assert [data["micro_batch_splits"] for message, data in events if "halved" in message] == [1, 2]


def test_an_oom_in_the_backward_counts_the_steps_tokens_once(tiny_model: Path, tmp_path: Path) -> None:
    reference = make_trainer(tiny_model, tmp_path / "reference")
    reference.train()
    trainer = make_trainer(tiny_model, tmp_path / "backoff")
    OomBackoff(trainer, lambda message, data: None)
    failures = []

    def fail_in_backward(module: torch.nn.Module, args: Any, output: Any) -> None:
        hidden = hidden_of(output)
        if module.training and hidden.shape[0] > FITS:

            def raise_oom(grad: torch.Tensor) -> None:
                failures.append(hidden.shape[0])
                raise torch.OutOfMemoryError("injected in the backward")

            hidden.register_hook(raise_oom)

    last_layer(trainer).register_forward_hook(fail_in_backward)

    trainer.train()

    assert failures, "the injected backward OOM never happened"
    tokens = [log["num_tokens"] for log in trainer.state.log_history if "num_tokens" in log]
    expected = [log["num_tokens"] for log in reference.state.log_history if "num_tokens" in log]
    assert tokens == expected


def test_released_backoff_lets_the_trained_model_be_freed(tiny_model: Path, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_model, tmp_path, steps=1)
    backoff = OomBackoff(trainer, lambda message, data: None)
    trainer.train()
    model = weakref.ref(trainer.model)

    backoff.release()
    del trainer
    gc.collect()

    assert model() is None


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_an_oom_that_cannot_be_split_further_is_raised_without_its_frames(
    tiny_model: Path, tmp_path: Path, where: str
) -> None:
    trainer = make_trainer(tiny_model, tmp_path, steps=1)
    trainer.args.gradient_checkpointing = True  # nothing left to turn on: one example that fails is final
    OomBackoff(trainer, lambda message, data: None)

    def always_fail(module: torch.nn.Module, args: Any, output: Any) -> None:
        if module.training and where == "forward":
            raise torch.OutOfMemoryError("injected: nothing fits")
        if module.training:
            hidden_of(output).register_hook(lambda grad: (_ for _ in ()).throw(torch.OutOfMemoryError("injected")))

    last_layer(trainer).register_forward_hook(always_fail)

    with pytest.raises(torch.OutOfMemoryError, match="injected"):
        trainer.train()
