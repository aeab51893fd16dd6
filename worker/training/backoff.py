"""Out-of-memory back-off inside a step: split the micro-batch that failed, keep the effective batch, go on.

Wraps `trainer.training_step`. A micro-batch that raises an allocator error has its partial gradients undone and is
retried as two halves (rows, or whole packed examples when padding-free); the halves' losses are scaled by the
step's token count, as the whole's was, so the step's gradient is unchanged. Later micro-batches are split the same
way up front. A single example that still does not fit turns on gradient checkpointing; after that the OOM stands.

`inject_oom_tokens=N` (the worker's `TUNEPOOL_INJECT_OOM_TOKENS`) makes every training forward of more than N tokens
raise a real `torch.OutOfMemoryError` (tests and drills: the path runs without a full GPU).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import torch

from worker.training.errors import is_out_of_memory

Batch = dict[str, Any]


class OomBackoff:
    """Installs the splitting training step (and the injection hook, when asked) on a Trainer."""

    def __init__(
        self, trainer: Any, on_change: Callable[[str, dict[str, Any]], None], inject_oom_tokens: int | None = None
    ) -> None:
        self.trainer: Any = trainer
        self.on_change = on_change  # reporter.event
        self.splits = 0  # each micro-batch is cut into 2**splits pieces
        self.checkpointing_enabled = bool(trainer.args.gradient_checkpointing)
        self._step: Any = trainer.training_step
        trainer.training_step = self.training_step
        if inject_oom_tokens is not None:
            trainer.model.register_forward_pre_hook(_injector(inject_oom_tokens), with_kwargs=True)

    def training_step(self, model: Any, inputs: Batch, num_items_in_batch: Any = None) -> torch.Tensor:
        if num_items_in_batch is None:  # the loss is a per-micro-batch mean: make it a sum over the step's count
            num_items_in_batch = _label_count(inputs) * self.trainer.current_gradient_accumulation_steps
        pieces = [inputs]
        for _ in range(self.splits):
            pieces = [half for piece in pieces for half in (split_batch(piece) or (piece,))]
        total = torch.zeros((), device=self.trainer.args.device)
        for piece in pieces:
            total = total + self._run(model, piece, num_items_in_batch, self.splits)
        return total

    def _run(self, model: Any, inputs: Batch, num_items: Any, depth: int) -> torch.Tensor:
        """One forward/backward of `inputs` (cut `depth` times already), halving it on an allocator failure."""
        saved = _save_grads(model)
        counted = getattr(self.trainer, "_total_train_tokens", None)
        message = self._attempt(model, inputs, num_items)
        if isinstance(message, torch.Tensor):
            return message
        # Only the error's text survived the attempt: its traceback held every frame of the failed step (loss,
        # outputs, activations), and keeping it would keep them allocated through the retry (PyTorch FAQ,
        # "My out of memory exception handler can't allocate memory").
        _restore_grads(model, saved)
        del saved
        if counted is not None:  # TRL counted the failed attempt's tokens in compute_loss; count each step once
            self.trainer._total_train_tokens = counted
        free_memory()
        halves = split_batch(inputs)
        if halves is None:
            if self.checkpointing_enabled:
                raise torch.OutOfMemoryError(message)
            self.trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.checkpointing_enabled = True
            self.on_change(
                "Out of memory on one example: turned on gradient checkpointing and retried the step",
                {"gradient_checkpointing": True, "micro_batch_splits": self.splits},
            )
            return self._run(model, inputs, num_items, depth)
        if depth + 1 > self.splits:
            self.splits = depth + 1
            self.on_change(
                f"Out of memory: micro-batch halved ({_tokens(inputs)} → {_tokens(halves[0])} tokens), step "
                "retried; the effective batch is unchanged",
                {"micro_batch_splits": self.splits, "failed_micro_tokens": _tokens(inputs)},
            )
        return self._run(model, halves[0], num_items, depth + 1) + self._run(model, halves[1], num_items, depth + 1)

    def _attempt(self, model: Any, inputs: Batch, num_items: Any) -> torch.Tensor | str:
        """The step's loss, or the allocator error's message (the exception itself is dropped here)."""
        try:
            return self._step(model, inputs, num_items)  # type: ignore[no-any-return]
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return f"{type(exc).__name__}: {exc}"

    def release(self) -> None:
        """Give the trainer its own training step back and drop every reference to it (and so to the model,
        optimizer and accelerator), so the memory can be freed before the merge."""
        if self.trainer is not None:
            self.trainer.training_step = self._step
        self.trainer = None
        self._step = None


def split_batch(batch: Batch) -> tuple[Batch, Batch] | None:
    """Two halves of a micro-batch: by rows, or (padding-free, one flat row) at the example boundary nearest the
    middle; None when it is a single example."""
    ids = batch["input_ids"]
    if ids.shape[0] > 1:
        cut = ids.shape[0] // 2
        first = {k: v[:cut] if _per_row(v, ids) else v for k, v in batch.items()}
        second = {k: v[cut:] if _per_row(v, ids) else v for k, v in batch.items()}
        return first, second
    if "position_ids" not in batch or "attention_mask" in batch:
        return None
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    starts = [s for s in starts if s > 0]
    if not starts:
        return None
    middle = ids.shape[1] / 2
    cut = min(starts, key=lambda s: abs(s - middle))
    return _flat_piece(batch, 0, cut), _flat_piece(batch, cut, ids.shape[1])


def _flat_piece(batch: Batch, start: int, end: int) -> Batch:
    """Tokens [start, end) of a padding-free batch, with TRL's varlen boundaries recomputed for them."""
    piece = {k: batch[k][:, start:end] for k in ("input_ids", "labels", "position_ids")}
    for k, v in batch.items():
        if k not in piece and not k.startswith(("cu_seq_lens", "max_length", "seq_idx")):
            piece[k] = v
    if "cu_seq_lens_q" in batch:
        positions = piece["position_ids"]
        seq_starts = (positions[0] == 0).nonzero().flatten()
        cu = torch.cat([seq_starts, torch.tensor([positions.size(1)], device=seq_starts.device)]).to(torch.int32)
        piece["cu_seq_lens_q"] = piece["cu_seq_lens_k"] = cu.to(batch["cu_seq_lens_q"].device)
        piece["max_length_q"] = piece["max_length_k"] = int(cu.diff().max())
        if "seq_idx" in batch:
            lengths = cu.diff().to(torch.long)
            piece["seq_idx"] = torch.repeat_interleave(
                torch.arange(lengths.numel(), dtype=torch.int32, device=lengths.device), lengths
            )[None].to(batch["seq_idx"].device)
    return piece


def _per_row(value: Any, ids: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == ids.shape[0]


def _tokens(batch: Batch) -> int:
    ids = batch["input_ids"]
    return int(ids.numel())


def _label_count(batch: Batch) -> torch.Tensor:
    count: torch.Tensor = batch["labels"][..., 1:].ne(-100).sum()
    return count


def _save_grads(model: Any) -> list[tuple[torch.nn.Parameter, torch.Tensor | None]]:
    """The trainable parameters' accumulated gradients (LoRA-sized), to undo a half-done backward."""
    return [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters() if p.requires_grad]


def _restore_grads(model: Any, saved: list[tuple[torch.nn.Parameter, torch.Tensor | None]]) -> None:
    for param, grad in saved:
        param.grad = grad


def free_memory() -> None:
    """Collect the failed attempt's reference cycles (frames, autograd graph) and return their blocks to the
    device, so the retry starts from what the model alone holds."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _injector(limit: int) -> Callable[..., None]:
    """A forward pre-hook that fails like the allocator does for training forwards over `limit` tokens."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if module.training and ids is not None and ids.numel() > limit:
            raise torch.OutOfMemoryError(f"injected: {ids.numel()} tokens > inject_oom_tokens={limit}")

    return hook
