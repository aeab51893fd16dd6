"""The training recipe: spec + paths + options + reporter in, adapter (and merged model) out. No DB, no Celery,
no HTTP, no settings or environment (the caller passes the worker's switches as TrainingOptions).

Reads top to bottom: load tokenizer and data → load the base (4-bit for QLoRA) → SFTTrainer with a LoRA
adapter → save the adapter → optionally reload the base in 16-bit and merge. The training stack is imported
inside `run_training`, so importing this module (for the types and errors) stays cheap.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from core.parallelism import rank_from_env
from core.schemas.spec import JobSpec
from worker.training.errors import (
    TrainingCancelled,
    TrainingError,
    TrainingPaused,
    is_out_of_memory,
    out_of_memory,
)
from worker.training.interfaces import Reporter, TrainingOptions, TrainingPaths, TrainingResult
from worker.training.memory_retry import retry_in_min_memory

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["run_training"]


def run_training(
    spec: JobSpec,
    paths: TrainingPaths,
    reporter: Reporter,
    device: str = "auto",
    options: TrainingOptions = TrainingOptions(),
) -> TrainingResult:
    """Fine-tune `paths.base_model` on `paths.train_file` per `spec`, with the worker's switches `options`.

    Raises TrainingError, TrainingCancelled or TrainingPaused."""
    if rank_from_env().distributed:  # a retry on one rank alone would leave the others waiting in a collective
        return _attempt(spec, paths, reporter, device, options)
    # An OOM the batch back-off cannot fix gets one more try in memory_mode "min".
    return retry_in_min_memory(lambda s: _attempt(s, paths, reporter, device, options), spec, reporter)


def _attempt(
    spec: JobSpec, paths: TrainingPaths, reporter: Reporter, device: str, options: TrainingOptions
) -> TrainingResult:
    """One run of the recipe, every failure mapped to TrainingError (or cancelled/paused)."""
    # A failed first try's model lives on in its exception's traceback until the retry starts: free it first.
    _free_memory()
    try:
        return _run(spec, paths, reporter, device, options)
    except (TrainingError, TrainingCancelled, TrainingPaused):
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory("training") from exc
        raise TrainingError("internal_error", f"Training failed unexpectedly: {type(exc).__name__}: {exc}") from exc
    finally:
        _free_memory()


def _run(
    spec: JobSpec, paths: TrainingPaths, reporter: Reporter, device: str, options: TrainingOptions
) -> TrainingResult:
    import torch
    from peft import PeftModel
    from transformers import PrinterCallback
    from trl import SFTTrainer

    from worker.training import config, distributed, evaluation, throughput
    from worker.training.callbacks import ReporterCallback
    from worker.training.diagnosis import DiagnosisCallback
    from worker.training.lineage import continue_adapter
    from worker.training.outputs import save_adapter
    from worker.training.preflight import report_data_warnings

    # Under torchrun: this rank's device and ddp/fsdp; refuses what the stack cannot run, joins the process group.
    rank, strategy, device = distributed.setup(spec, paths.base_model, device)
    if spec.method == "dpo":  # preference pairs: DPOTrainer on the same adapter (worker/training/dpo.py)
        from worker.training.dpo import run_dpo

        return run_dpo(spec, paths, reporter, device, options, rank, strategy)
    device = config.resolve_device(device)
    _check_inputs(paths)
    tokenizer = _load_tokenizer(paths.base_model)

    max_len = spec.training.max_seq_length
    prepared = throughput.load_data(paths, tokenizer, max_len, reporter, options.data_cache_dir)  # by content hash
    train, valid = prepared.train, prepared.valid
    reporter.event(
        f"Loaded {len(train.dataset)} training examples ({train.format.value})"
        + (f" and {len(valid.dataset)} validation examples" if valid else ""),
        {
            "format": train.format.value,
            "examples": len(train.dataset),
            "tokens": train.tokens,
            "loss_tokens": train.loss_tokens,
            "truncated": train.truncated,
            "dropped": train.dropped,
            "valid_examples": len(valid.dataset) if valid else 0,
        },
    )
    if paths.resume_from is None:  # a resumed run warned already
        report_data_warnings(prepared, max_len, reporter)

    quantization = config.bnb_config(spec, device, sharded=strategy == "fsdp")
    quantized = quantization is not None
    if not quantized and spec.quantization.mode.value != "none":
        reporter.event(f"bitsandbytes has no 4-bit backend on {device}: training plain LoRA instead of QLoRA")
    mode = spec.quantization.mode.value if quantized else "none"
    on = f"{device}, {strategy} over {rank.world_size} ranks" if rank.distributed else device
    reporter.event(
        f"Loading base model {paths.base_model.name} ({mode}, {on})",
        {"quantization": mode, "parallelism": strategy, "world_size": rank.world_size},
    )
    with _stage("loading the base model"):
        dtype = config.training_dtype(spec, device, quantized)
        model = _load_model(paths.base_model, quantization, dtype, device, options.attention)
    if quantized and device == "cpu":
        _keep_4bit_layout_trainable(model)

    args = config.sft_config(
        spec, output_dir=paths.output_dir / "trainer", device=device, quantized=quantized, has_eval=valid is not None,
        strategy=strategy, world_size=rank.world_size,
    )  # fmt: skip
    # Packing, micro-batch/accumulation/checkpointing from free memory, kernels: see worker/training/throughput.py.
    args, tuning = throughput.tune(
        spec,
        model,
        prepared,
        args,
        device=device,
        default_optimizer=_optimizer_name(args),
        reporter=reporter,
        resume_from=paths.resume_from,
        options=options,
        world_size=rank.world_size,
    )
    callback = ReporterCallback(reporter)
    diagnosis = DiagnosisCallback(spec, reporter)  # overfitting, early instability, early stopping
    peft_config: Any = config.lora_config(spec)
    if paths.init_adapter is not None:  # continued training: the parent's adapter, not a fresh one
        model, peft_config = continue_adapter(model, paths.init_adapter, reporter), None  # type: ignore[assignment]
    try:
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train.dataset,
            eval_dataset=valid.dataset if valid else None,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[callback, diagnosis],
        )
    except ValueError as exc:
        if "target modules" in str(exc).lower():
            raise TrainingError("invalid_target_modules", f"{exc} Use 'attention' or 'all-linear'.") from exc
        raise
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; the reporter has them
    if rank.distributed:
        distributed.plain_cpu_device(trainer.args)
    # An OOM step is retried with a halved micro-batch; not with several ranks, whose gradient all-reduce expects
    # the same number of backward passes from each.
    if not rank.distributed:
        throughput.install_backoff(trainer, reporter, tuning, options.inject_oom_tokens)
    peft_model = trainer.model
    assert isinstance(peft_model, PeftModel)  # SFTTrainer wraps the base in the adapter of `peft_config`
    if quantized and config.compute_dtype(spec, device) == torch.float32:
        _adapter_to_float32(peft_model)
    trainable, total = peft_model.get_nb_trainable_parameters()
    reporter.event(
        f"LoRA adapter: {trainable:,} trainable parameters ({100 * trainable / total:.2f}% of {total:,})",
        {"trainable_params": trainable, "total_params": total},
    )

    with _stage("training"):
        trainer.train(resume_from_checkpoint=str(paths.resume_from) if paths.resume_from else None)
    throughput.release_backoff(tuning)  # it held the trainer, and so the model, optimizer and accelerator
    steps = trainer.state.global_step
    check_finished(callback, steps, reporter, "lower the learning rate or raise warmup_ratio")
    if strategy == "fsdp":  # each rank holds a shard of the adapter: gather it once, with every rank
        gathered = distributed.gather_adapter(trainer, paths.output_dir / "fsdp-adapter")
    if not rank.is_main:  # rank 0 alone evaluates, saves and merges; this rank's part is done
        return TrainingResult(
            paths.output_dir / "adapter", None, steps, callback.tokens, callback.last, tuning.as_dict()
        )
    if strategy == "fsdp":  # the sharded model runs only with all ranks: evaluate and save an unsharded copy
        del trainer, model, peft_model
        _free_memory()
        with _stage("reloading the trained adapter"):
            model = _load_model(paths.base_model, config.bnb_config(spec, device), dtype, device, options.attention)
            peft_model = PeftModel.from_pretrained(model, gathered)
        trainer = cast(Any, None)  # freed; the merge below deletes the name
    published_step = steps
    if spec.training.early_stopping is not None and (best := diagnosis.restore_best(peft_model)) is not None:
        published_step = best
        reporter.event(f"Publishing the best checkpoint by validation loss: step {best}", {"published_step": best})
    eval_data, eval_file, evaluated_on = (
        (valid, paths.valid_file, "validation_file")
        if valid and paths.valid_file
        else (train, paths.train_file, "training_file (no validation_file: these examples were trained on)")
    )
    with _stage("evaluating"):
        report = evaluation.report(peft_model, tokenizer, eval_data, eval_file, evaluated_on)
    report.update(steps=steps, published_step=published_step, stopped_early_at=diagnosis.stopped_early_at)
    reporter.event(
        f"Evaluation on the {evaluated_on.split()[0]}: loss {report['base']['loss']:.4f} (base) → "
        f"{report['fine_tune']['loss']:.4f} (fine-tune)",
        {"base": report["base"], "fine_tune": report["fine_tune"]},
    )

    manifest = run_manifest(
        spec, paths, callback, args, dataset_format=train.format.value, quantization=mode, device=device, steps=steps,
        published_step=published_step,
    ) | {"bf16": bool(args.bf16), "batching": tuning.as_dict()}  # fmt: skip
    adapter_dir = paths.output_dir / "adapter"
    reporter.event("Saving adapter")
    save_adapter(peft_model, tokenizer, adapter_dir, manifest, base_model_name=paths.base_model.name)

    merged_dir = None
    if "merged" in spec.artifacts:
        # Free the training model (nothing else holds it now) before loading the 16-bit base.
        del trainer, model, peft_model
        _free_memory()
        merged_dir, merge_on = merge_with_fallback(paths, adapter_dir, device, reporter)
        if options.inject_broken_merge:
            evaluation.round_to_4bit(merged_dir)
        reporter.event("Saved merged model")
        with _stage("checking the merged model"):
            # On the merge's device: the training model is freed, and a GPU too full to merge falls back to the CPU.
            check = evaluation.check_merged(
                paths.base_model, adapter_dir, merged_dir, eval_data, merge_on, config.merge_dtype(merge_on)
            )
        report["merge_check"] = check
        if not check["passed"]:
            merged_dir = None  # the adapter is still published
            reporter.warning(
                "merge_check_failed",
                f"Merge check failed: {evaluation.merge_failure(check)}; the merged model is not published, the "
                "adapter is. A merge into 4-bit weights does this: merge into a 16-bit base.",
                "artifacts",
                check,
            )
    return TrainingResult(
        adapter_dir, merged_dir, steps, callback.tokens, callback.last, tuning.as_dict(), report, published_step
    )


def check_finished(callback: Any, steps: int, reporter: Reporter, divergence_hint: str) -> None:
    """Raise what stopped training early (pause, cancel, divergence); else report that it finished."""
    if callback.paused:
        reporter.event(f"Training paused at step {steps}")
        raise TrainingPaused(steps)
    if callback.cancelled:
        reporter.event(f"Training cancelled at step {steps}")
        raise TrainingCancelled(steps)
    if callback.diverged_at is not None:
        raise TrainingError(
            "diverged",
            f"Training diverged at step {callback.diverged_at} (loss or gradient norm became NaN/inf); "
            f"{divergence_hint}.",
            step=callback.diverged_at,
        )
    reporter.event(f"Training finished: {steps} steps, {callback.tokens} tokens")


def run_manifest(
    spec: JobSpec, paths: TrainingPaths, callback: Any, args: Any, *, dataset_format: str, quantization: str,
    device: str, steps: int, published_step: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What the adapter's manifest records of any recipe's run: spec, inputs, precision, outcome, lineage."""
    from worker.training.lineage import lineage_manifest
    from worker.training.outputs import library_versions

    return {
        "spec": spec.model_dump(mode="json"),
        "base_model": paths.base_model.name,
        "dataset_format": dataset_format,
        "quantization": quantization,
        "device": device,
        "optimizer": _optimizer_name(args),
        "steps": steps,
        "published_step": published_step,
        "trained_tokens": callback.tokens,
        "final_metrics": callback.last.model_dump(mode="json") if callback.last else None,
        "versions": library_versions(),
        **lineage_manifest(spec, paths.base_model.name),
    }


def merge_with_fallback(
    paths: TrainingPaths, adapter_dir: Path, device: str, reporter: Reporter
) -> tuple[Path, str]:
    """Merge the saved adapter into the 16-bit base on `device`, or on the CPU when its free memory is too small;
    the merged directory and the device it was merged on."""
    import torch

    from worker.training.outputs import merge_adapter, merge_device, merge_need_bytes

    need = merge_need_bytes(paths.base_model, adapter_dir)
    free = torch.cuda.mem_get_info(torch.device(device))[0] if device.startswith("cuda") else None
    merge_on = merge_device(device, need, free)
    reporter.event(
        f"Merging adapter into 16-bit base on {merge_on}"
        + (f" ({free / 2**30:.1f} GiB free on {device}, {need / 2**30:.1f} GiB needed)" if free else ""),
        {"merge_device": merge_on, "merge_need_bytes": need, "free_bytes": free},
    )
    with _stage("merging the adapter"):
        return merge_adapter(paths.base_model, adapter_dir, paths.output_dir / "merged", merge_on), merge_on


def _optimizer_name(args: Any) -> str:
    """The optimizer of an SFTConfig, by name (TrainingArguments turns `optim` into an OptimizerNames enum)."""
    return str(getattr(args.optim, "value", args.optim))


def _check_inputs(paths: TrainingPaths) -> None:
    """Fail fast, with codes, on inputs that are not there."""
    if not (paths.base_model / "config.json").is_file():
        raise TrainingError("invalid_model", f"No model at {paths.base_model} (config.json is missing).")
    for path in (paths.train_file, paths.valid_file):
        if path is not None and not path.is_file():
            raise TrainingError("missing_file", f"Dataset file {path.name} is not on the worker.")


def _load_tokenizer(base_model: Path) -> PreTrainedTokenizerBase:
    """The base model's tokenizer, with a pad token (EOS when it has none, as TRL would choose)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError("invalid_model", f"Cannot load the tokenizer of {base_model.name}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_model(base_model: Path, quantization: Any, dtype: Any, device: str, attention: str) -> PreTrainedModel:
    """The base model on `device`, 4-bit when `quantization` is set."""
    from transformers import AutoModelForCausalLM

    from worker.training.kernels import attention_implementation

    try:
        return AutoModelForCausalLM.from_pretrained(
            base_model,
            quantization_config=quantization,
            dtype=dtype,
            device_map={"": device},
            attn_implementation=attention_implementation(device, attention),
        )
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError("invalid_model", f"Cannot load base model {base_model.name}: {exc}") from exc


def _keep_4bit_layout_trainable(model: Any) -> None:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference during evaluation."""
    # bitsandbytes 0.50 repacks on the first eval-mode forward (on AVX512-BF16 CPUs) and never unpacks for
    # training; later training forwards then run gemv_4bit, which has no autograd kernel, and the gradient
    # through the frozen base layers is silently dropped.
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _adapter_to_float32(model: Any) -> None:
    """Undo TRL's bf16 cast of QLoRA adapters when compute is float32 (CPU): bf16 there only loses precision."""
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()


@contextmanager
def _stage(name: str) -> Iterator[None]:
    """Map an allocator failure inside the block to TrainingError("out_of_memory") naming the stage."""
    try:
        yield
    except Exception as exc:
        if is_out_of_memory(exc):
            raise out_of_memory(name) from exc
        raise


def _free_memory() -> None:
    """Return freed tensors to the device between stages (and after a failure, for the next job)."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
