"""Packing: each micro-batch's examples flattened into one padding-free row, when padding would waste.

TRL's padding-free collator does the work: it concatenates a micro-batch's pre-tokenized `input_ids` + `labels` as
they are (so completion-only, assistant-only and weight-0 masks survive), restarts `position_ids` at every example
and masks the label of each example's first token; the attention (varlen flash kernels, or the block-diagonal mask
transformers builds from the position ids) keeps each example to itself. Unlike packing into fixed rows of
`max_seq_length` tokens (TRL's BFD), a micro-batch is a number of *examples*, so `batch_size` means examples per
step whatever `max_seq_length` is: 16 short examples at batch size 4 are 4 optimizer steps, not one full row. No
token is padding either way. Examples are already truncated to max_seq_length by `data.load_dataset`.
"""

from __future__ import annotations

import random
from typing import Any

# Pack when unpacked batches would spend more than this fraction of their tokens on padding.
PACK_WASTE_THRESHOLD = 0.05
_SAMPLE_BATCH_ROWS = 8


def padding_waste(lengths: list[int], batch_rows: int = _SAMPLE_BATCH_ROWS, seed: int = 0) -> float:
    """Fraction of tokens that would be padding when shuffled examples are batched `batch_rows` at a time."""
    order = list(lengths)
    random.Random(seed).shuffle(order)
    padded = real = 0
    for i in range(0, len(order), batch_rows):
        batch = order[i : i + batch_rows]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 1 - real / padded if padded else 0.0


def should_pack(requested: bool | None, lengths: list[int]) -> bool:
    """The user's explicit choice, else pack when padding would waste more than PACK_WASTE_THRESHOLD."""
    if requested is not None:
        return requested
    return len(lengths) > 1 and padding_waste(lengths) > PACK_WASTE_THRESHOLD


def sft_packing_args(pack: bool) -> dict[str, Any]:
    """SFTConfig fields for padding-free (flattened examples) or plain padded batches."""
    if pack:
        # TRL enforces no max_length on padding-free batches (it refuses one); data.load_dataset truncated them.
        return {"packing": False, "padding_free": True, "max_length": None}
    return {"packing": False, "padding_free": False}
