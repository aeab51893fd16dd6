"""Packing: best-fit-decreasing rows of `max_seq_length` tokens, trained padding-free, when padding would waste.

TRL does the work (`packing_strategy="bfd"` + `padding_free`): it packs our pre-tokenized `input_ids` + `labels`
as they are (so completion-only and assistant-only masks survive), restarts `position_ids` at every example, and
masks the label of each example's first token, so no example attends to or is trained to predict across its
neighbour. Examples are already truncated to max_seq_length by `data.load_dataset`, so BFD never cuts one.
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
    """SFTConfig fields for packed (BFD, padding-free) or plain padded batches."""
    if pack:
        return {"packing": True, "packing_strategy": "bfd", "padding_free": True}
    return {"packing": False, "padding_free": False}
