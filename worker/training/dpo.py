"""The DPO recipe: preference pairs + spec in, adapter (and merged model) out, like the SFT recipe beside it.

Reads top to bottom: load the pairs → load the base (4-bit for QLoRA) → DPOTrainer on a LoRA adapter → save the
adapter → optionally merge. The reference model is never a second copy: with a fresh adapter DPOTrainer computes
the reference log-probabilities with the adapter disabled (the base); continuing a fine-tune (SFT → DPO), it
keeps a frozen copy of the parent's adapter as the reference ("ref", a few MB), which the saved adapter drops.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from peft import PeftModel
from transformers import PrinterCallback, TrainingArguments
from trl import DPOConfig, DPOTrainer

from core.parallelism import Rank, Strategy
from core.schemas.method import DpoSpec
from core.schemas.spec import JobSpec
from worker.training import config, distributed
from worker.training.callbacks import ReporterCallback
from worker.training.interfaces import Reporter, TrainingOptions, TrainingPaths, TrainingResult
from worker.training.lineage import continue_adapter
from worker.training.outputs import save_adapter
from worker.training.pairs import load_pairs
from worker.training.recipe import (
    _adapter_to_float32,
    _check_inputs,
    _free_memory,
    _keep_4bit_layout_trainable,
    _load_model,
    _load_tokenizer,
    _stage,
    check_finished,
    merge_with_fallback,
    run_manifest,
)

_REFERENCE = "ref"  # the adapter name DPOTrainer gives its frozen copy of a pretrained adapter


def run_dpo(
    spec: JobSpec,
    paths: TrainingPaths,
    reporter: Reporter,
    device: str,
    options: TrainingOptions,
    rank: Rank = Rank(),
    strategy: Strategy = "single",
) -> TrainingResult:
    """Preference-tune `paths.base_model` (or the parent adapter) on `paths.train_file`'s pairs per `spec`; one of
    `rank.world_size` DDP processes (FSDP is refused up front, core.parallelism.unsupported_reason)."""
    dpo = spec.dpo or DpoSpec()
    device = config.resolve_device(device)
    _check_inputs(paths)
    tokenizer = _load_tokenizer(paths.base_model)
    train = load_pairs(paths.train_file)
    valid = load_pairs(paths.valid_file) if paths.valid_file else None
    reporter.event(
        f"Loaded {len(train)} preference pairs" + (f" and {len(valid)} validation pairs" if valid else ""),
        {"format": "preference", "examples": len(train), "valid_examples": len(valid) if valid else 0},
    )

    quantization = config.bnb_config(spec, device)
    quantized = quantization is not None
    mode = spec.quantization.mode.value if quantized else "none"
    reporter.event(f"Loading base model {paths.base_model.name} ({mode}, {device})", {"quantization": mode})
    with _stage("loading the base model"):
        model: Any = _load_model(
            paths.base_model, quantization, config.training_dtype(spec, device, quantized), device, options.attention
        )
    if quantized and device == "cpu":
        _keep_4bit_layout_trainable(model)
    peft_config: Any = config.lora_config(spec)
    if paths.init_adapter is not None:  # SFT → DPO: the parent's adapter is trained on, and is the reference
        model, peft_config = continue_adapter(model, paths.init_adapter, reporter), None

    args = dpo_config(
        spec, dpo, paths, device=device, quantized=quantized, has_eval=valid is not None, strategy=strategy,
        world_size=rank.world_size,
    )  # fmt: skip
    if options.optimizer:
        args.optim = options.optimizer
    callback = ReporterCallback(reporter)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=valid,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)
    if rank.distributed:
        distributed.plain_cpu_device(trainer.args)  # as in the SFT recipe: a checkpoint must resume
    peft_model = trainer.model
    assert isinstance(peft_model, PeftModel)
    if quantized and config.compute_dtype(spec, device) == torch.float32:  # as in the SFT recipe
        _adapter_to_float32(peft_model)
    reporter.event(
        f"DPO: beta={dpo.beta}, loss={_losses(dpo)}, reference: "
        + ("the parent adapter, frozen" if paths.init_adapter else "the base (adapter disabled)"),
        {"beta": dpo.beta, "loss_type": _losses(dpo)},
    )

    with _stage("training"):
        trainer.train(resume_from_checkpoint=str(paths.resume_from) if paths.resume_from else None)
    steps = trainer.state.global_step
    check_finished(callback, steps, reporter, "lower the learning rate or beta")
    if not rank.is_main:  # rank 0 alone saves and merges
        return TrainingResult(paths.output_dir / "adapter", None, steps, callback.tokens, callback.last, None)
    if _REFERENCE in peft_model.peft_config:  # the frozen reference is not part of the result
        peft_model.delete_adapter(_REFERENCE)
    manifest = {"method": "dpo"} | run_manifest(
        spec, paths, callback, args, dataset_format="preference", quantization=mode, device=device, steps=steps
    )
    adapter_dir = paths.output_dir / "adapter"
    reporter.event("Saving adapter")
    save_adapter(peft_model, tokenizer, adapter_dir, manifest, base_model_name=paths.base_model.name)
    merged_dir = None
    if "merged" in spec.artifacts:
        del trainer, model, peft_model
        _free_memory()
        merged_dir, _ = merge_with_fallback(paths, adapter_dir, device, reporter)
        reporter.event("Saved merged model")
    return TrainingResult(adapter_dir, merged_dir, steps, callback.tokens, callback.last, None)


def _losses(dpo: DpoSpec) -> list[str]:
    """TRL's loss list: the variant, plus the chosen answers' NLL ("sft") for RPO."""
    return [dpo.loss_type] + (["sft"] if dpo.rpo_alpha is not None else [])


def dpo_config(
    spec: JobSpec,
    dpo: DpoSpec,
    paths: TrainingPaths,
    *,
    device: str,
    quantized: bool,
    has_eval: bool,
    strategy: Strategy = "single",
    world_size: int = 1,
) -> DPOConfig:
    """The SFT recipe's training arguments (schedule, cadence, optimizer, precision, DDP) with DPO's own fields."""
    sft = config.sft_config(spec, output_dir=paths.output_dir / "trainer", device=device, quantized=quantized,
                            has_eval=has_eval, strategy=strategy, world_size=world_size)  # fmt: skip
    shared = {
        f.name: getattr(sft, f.name)
        for f in dataclasses.fields(TrainingArguments)
        if f.init and not f.name.startswith("_") and f.name not in ("logging_dir",)
    }
    return DPOConfig(
        **shared,
        beta=dpo.beta,
        loss_type=_losses(dpo),
        loss_weights=[1.0, dpo.rpo_alpha] if dpo.rpo_alpha is not None else None,
        max_length=spec.training.max_seq_length,
    )
