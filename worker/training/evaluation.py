"""The evaluation report after training: base vs fine-tune validation loss, greedy generations, the merge check.

Loss is token-weighted mean NLL over the loss tokens of the evaluation examples (the same labels training used);
perplexity is exp(loss). The merge check (seed failure case 1: a merge into 4-bit weights outputs garbage) compares
the saved merged weights with W_base + scaling x (B @ A) (merge_weights: the verdict), and the merged model's loss
with the 16-bit base + adapter's (only a gross difference fails: see LOSS_TOLERANCE).
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

import torch

from core.chat import normalize_messages, normalize_tools
from core.datasets import detect_format
from core.enums import DatasetFormat
from worker.training.data import IGNORE_INDEX, TokenizedData, read_jsonl
from worker.training.merge_weights import weight_check

MAX_EVAL_EXAMPLES = 64  # bounds the report's cost on a big validation file (it states how many it used)
MAX_GENERATIONS = 8
MAX_NEW_TOKENS = 48
# |merged - (base + adapter)| loss may be this much of the reference loss, with this floor (nats). The loss cannot
# judge the merge (merge_weights' docstring: a correct bf16 merge moved SmolLM2-135M's by 6.3e-3 on a loss of 0.06,
# 4-bit levels the tiny Llama's by 7.7e-3); it catches what the weights cannot show: a merged model that loads wrong
# (its config, a tensor left out and initialised at random) and outputs garbage, nats off. 5% lies far above the
# rounding of a correct merge (1e-4 to 4e-4 on the tiny Llama's loss of 6), the floor 0.02 at 3 times SmolLM2's 6.3e-3
# on its near-zero loss; SmolLM2 merged and rounded to 4-bit levels moved by 0.42, failing both checks.
LOSS_TOLERANCE = (0.05, 0.02)


def loss_on(model: Any, data: TokenizedData, limit: int = MAX_EVAL_EXAMPLES) -> float:
    """Token-weighted mean NLL of `model` over the first `limit` examples' loss tokens (batch 1: no padding)."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for row in data.dataset.select(range(min(limit, len(data.dataset)))):
            ids = torch.tensor([row["input_ids"]], device=device)
            labels = torch.tensor([row["labels"]], device=device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            target = labels[:, 1:]
            total += float(
                torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
                )
            )
            count += int((target != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / count if count else math.nan


def side(loss: float) -> dict[str, float | None]:
    """{loss, perplexity} for one model."""
    return {"loss": round(loss, 6), "perplexity": round(math.exp(loss), 4) if loss < 50 else None}


def prompts(path: Path, tokenizer: Any, limit: int = MAX_GENERATIONS) -> list[tuple[list[int], str, str]]:
    """(prompt token ids, prompt text, reference answer) for up to `limit` examples of a JSONL file."""
    found: list[tuple[list[int], str, str]] = []
    records = [record for _, record in read_jsonl(path)]
    fmt = detect_format(records[0])
    for record in records[:limit]:
        if fmt == DatasetFormat.CHAT or (fmt == DatasetFormat.PROMPT_COMPLETION and isinstance(record["prompt"], list)):
            raw = record["messages"] if fmt == DatasetFormat.CHAT else record["prompt"] + record["completion"]
            messages = normalize_messages(raw)  # text parts joined, tool calls as the template expects: as trained
            last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
            if last is None or not tokenizer.chat_template:
                continue
            ids = tokenizer.apply_chat_template(
                messages[:last], tools=normalize_tools(record), add_generation_prompt=True, tokenize=True
            )
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            shown = str(messages[last - 1].get("content", "")) if last else ""
            found.append((list(ids), shown, str(messages[last].get("content", ""))))
        elif fmt == DatasetFormat.PROMPT_COMPLETION:
            text = str(record["prompt"])
            found.append((tokenizer(text)["input_ids"], text, str(record["completion"])))
        else:  # plain text: the first half prompts, the second half is the reference
            words = str(record["text"]).split()
            head, tail = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
            found.append((tokenizer(head)["input_ids"], head, tail))
    return found


def generate(model: Any, tokenizer: Any, ids: list[int]) -> str:
    """Greedy continuation of `ids`, decoded without special tokens."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([ids], device=device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=device),
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return str(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))


def merge_check(
    reference_loss: float, merged_loss: float, dtype: torch.dtype, weights: dict[str, Any]
) -> dict[str, Any]:
    """Passed when the weight check passed and the merged model's loss is within LOSS_TOLERANCE of base + adapter's."""
    rel, floor = LOSS_TOLERANCE
    tolerance = max(floor, rel * abs(reference_loss))
    difference = abs(merged_loss - reference_loss)
    loss_passed = math.isfinite(merged_loss) and difference <= tolerance
    return {
        "passed": bool(weights["weights_passed"]) and loss_passed,
        "loss_passed": loss_passed,
        "base_plus_adapter_loss": round(reference_loss, 6),
        "merged_loss": round(merged_loss, 6) if math.isfinite(merged_loss) else None,
        "difference": round(difference, 6) if math.isfinite(difference) else None,
        "tolerance": round(tolerance, 6),
        "dtype": str(dtype).removeprefix("torch."),
        **weights,
    }


def check_merged(
    base_model: Path, adapter_dir: Path, merged_dir: Path, data: TokenizedData, device: str, dtype: torch.dtype
) -> dict[str, Any]:
    """Compare the saved merged weights with base + adapter's in float32, then load base + adapter (unmerged) and
    the merged model, both in `dtype`, and compare their losses."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    weights = weight_check(base_model, adapter_dir, merged_dir, dtype)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, device_map={"": device})
    reference = loss_on(PeftModel.from_pretrained(base, adapter_dir), data)
    del base
    # PeftModel's module cycles keep the base alive past `del`: one 16-bit model at a time, as in the merge.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=dtype, device_map={"": device})
    result = merge_check(reference, loss_on(merged, data), dtype, weights)
    del merged
    return result


def merge_failure(check: dict[str, Any]) -> str:
    """Why a merge check failed, in words (the merge_check_failed warning)."""
    reasons = []
    if missing := check["missing_tensors"]:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        reasons.append(f"the merged model lacks (or reshapes) tensors {', '.join(missing[:3])}{more}")
    if not check["adapted_tensors"]:
        reasons.append("no tensor of the base matches the adapter's")
    if check["max_weight_error"] > check["weight_tolerance"]:
        reasons.append(
            f"its weights differ from base + adapter's by {check['max_weight_error']} ({check['worst_module']}; a "
            f"correct {check['dtype']} merge is within {check['weight_tolerance']})"
        )
    if not check["loss_passed"]:
        reasons.append(
            f"its loss {check['merged_loss']} differs from base + adapter's {check['base_plus_adapter_loss']} by "
            f"more than {check['tolerance']}"
        )
    return "; ".join(reasons)


def report(model: Any, tokenizer: Any, data: TokenizedData, prompts_file: Path, evaluated_on: str) -> dict[str, Any]:
    """Base (adapter disabled) vs fine-tune loss on `data`, and greedy generations of both for `prompts_file`."""
    fine = loss_on(model, data)
    asked = prompts(prompts_file, tokenizer)
    tuned = [generate(model, tokenizer, ids) for ids, _, _ in asked]
    with model.disable_adapter():
        base = loss_on(model, data)
        untuned = [generate(model, tokenizer, ids) for ids, _, _ in asked]
    return {
        "evaluated_on": evaluated_on,
        "examples": min(MAX_EVAL_EXAMPLES, len(data.dataset)),
        "base": side(base),
        "fine_tune": side(fine),
        "generations": [
            {"prompt": text, "reference": ref, "base": b, "fine_tune": f}
            for (_, text, ref), b, f in zip(asked, untuned, tuned, strict=True)
        ],
    }


def round_to_4bit(merged_dir: Path) -> None:
    """Break a merge on purpose, as merging into a 4-bit model does: every projection weight rounded to 16 levels
    of its row's absmax (tests and drills of the merge check; TUNEPOOL_INJECT_BROKEN_MERGE)."""
    from safetensors.torch import load_file, save_file

    for shard in merged_dir.glob("*.safetensors"):
        tensors = load_file(str(shard))
        for name, weight in tensors.items():
            if weight.dim() == 2 and name.endswith("proj.weight"):
                scale = weight.float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 7
                tensors[name] = ((weight.float() / scale).round().clamp(-8, 7) * scale).to(weight.dtype)
        save_file(tensors, str(shard), metadata={"format": "pt"})
