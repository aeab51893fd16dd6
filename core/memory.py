"""One model of a LoRA/QLoRA job's peak GPU memory: placement asks it for the smallest plan that fits a GPU, the
worker for the fastest plan that fits the memory it has. Torch-free; calibrated against the plain-TRL runs of
../shared/BASELINE.md (Llama-3-8B shape, 2048 tokens, H200) in tests/core/test_memory.py.

peak allocated = frozen weights + adapter states + activations of one micro-batch (+ the attention mask)

- weights: NF4 packs two linear weights a byte plus block constants; embeddings and the LM head stay 16-bit.
- adapter states: QLoRA (TRL casts the adapter to bf16, paged 8-bit AdamW) 6 B/param; 16-bit LoRA (fp32
  adapter, AdamW) 16 B/param.
- activations per token: checkpointed, each layer's input (L·h values) plus the larger of the logits (V values)
  or one recomputed layer; not checkpointed, every layer's (8·h + 2.5·intermediate) values plus the logits.
  A 16-bit base keeps 1.2× what a 4-bit one does (fitted to runs D and F; QLoRA's 4-bit matmul saves less).
- attention: a padded batch or a packed micro-batch under SDPA gets a 16-bit mask — per row (rows·S²), or, packed
  padding-free, one block-diagonal mask over the whole flattened micro-batch ((rows·S)²); flash-attention's varlen
  kernel needs none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

GIB = 2**30
GB = 1_000_000_000
# NF4: 4 bits + an 8-bit absmax per 64 weights (double quantisation) or an fp32 one (without).
NF4_BYTES = {True: 0.5 + 1 / 64, False: 0.5 + 4 / 64}
ADAPTER_BYTES = {True: 6, False: 16}  # per adapter parameter: weight + gradient + optimizer moments
LAYER_VALUES_PER_TOKEN = (8.0, 2.5)  # (× hidden, × intermediate) values one layer keeps for its backward
FULL_PRECISION_FACTOR = 1.2  # 16-bit base vs 4-bit base activations (BASELINE runs D, F against C, E)
# What a GPU must have beyond the peak allocated: the CUDA context and cuBLAS workspaces, allocator slack.
CUDA_OVERHEAD_BYTES = 1 * GB
FRAGMENTATION = 1.10

Attention = Literal["flash_varlen", "sdpa_packed", "sdpa"]
ATTENTION_LABELS: dict[str, str] = {
    "flash_varlen": "flash-attention varlen (per example, no mask)",
    "sdpa_packed": "SDPA with a block-diagonal mask (dense over the packed micro-batch)",
    "sdpa": "SDPA (per row)",
}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """What the memory and speed of a decoder-only transformer depend on, read from its config."""

    parameters: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    kv_size: int | None = None  # num_key_value_heads × head_dim (grouped-query attention); hidden_size if None
    tied_embeddings: bool = False

    @property
    def embedding_parameters(self) -> int:
        """Input embedding and LM head (one matrix when tied): kept 16-bit, and not matmul FLOPs per token."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def body_parameters(self) -> int:
        """Parameters of the decoder layers: the N of FLOPs ≈ 4·N per token (embeddings excluded)."""
        return max(0, self.parameters - self.embedding_parameters)

    def projection_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each LoRA-targetable linear layer of one decoder layer."""
        h, kv, inter = self.hidden_size, self.kv_size or self.hidden_size, self.intermediate_size
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, inter),
            "up_proj": (h, inter),
            "down_proj": (inter, h),
        }


def shape_from_config(config: dict[str, Any], parameters: int | None = None) -> ModelShape:
    """The shape of a HF config.json (multimodal configs nest the language model's); parameters counted from the
    dimensions when not given (a 4-bit model's own count is of packed bytes)."""
    text = config.get("text_config") or config
    hidden = int(text["hidden_size"])
    heads = int(text.get("num_attention_heads") or max(1, hidden // 128))
    head_dim = int(text.get("head_dim") or hidden // heads)
    kv = int(text.get("num_key_value_heads") or heads) * head_dim
    shape = ModelShape(
        parameters=0,
        hidden_size=hidden,
        num_layers=int(text["num_hidden_layers"]),
        intermediate_size=int(text.get("intermediate_size") or 4 * hidden),
        vocab_size=int(text.get("vocab_size") or 32000),
        kv_size=kv,
        tied_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))),
    )
    if parameters is None:
        per_layer = sum(i * o for i, o in shape.projection_dims().values()) + 2 * hidden  # + the two norms
        parameters = shape.embedding_parameters + shape.num_layers * per_layer + hidden
    return ModelShape(**{**shape.__dict__, "parameters": int(parameters)})


def lora_parameters(shape: ModelShape, rank: int, targets: str | list[str] | tuple[str, ...]) -> int:
    """Adapter parameters: rank × (in + out) per targeted projection ("all-linear": every one but the LM head)."""
    chosen = LORA_TARGETS if targets == "all-linear" else tuple(targets)
    per_layer = sum(rank * (i + o) for name, (i, o) in shape.projection_dims().items() if name in chosen)
    return shape.num_layers * per_layer


def weight_bytes(shape: ModelShape, quantized: bool, double_quant: bool = True, value_bytes: int = 2) -> int:
    """The frozen base as loaded: NF4 linear layers and 16-bit embeddings, or all 16-bit (4 B: float32 on CPU)."""
    if not quantized:
        return shape.parameters * value_bytes
    return int(shape.body_parameters * NF4_BYTES[double_quant] + shape.embedding_parameters * value_bytes)


def adapter_bytes(lora_params: int, quantized: bool) -> int:
    """Adapter weights, gradients and optimizer moments."""
    return lora_params * ADAPTER_BYTES[quantized]


def activation_bytes(
    shape: ModelShape,
    *,
    rows: int,
    row_tokens: int,
    checkpointing: bool,
    quantized: bool,
    attention: Attention = "sdpa",
    value_bytes: int = 2,
) -> int:
    """Peak bytes one micro-batch of `rows` × `row_tokens` tokens adds beyond the weights and adapter states."""
    h, layers = shape.hidden_size, shape.num_layers
    layer = (LAYER_VALUES_PER_TOKEN[0] * h + LAYER_VALUES_PER_TOKEN[1] * shape.intermediate_size) * value_bytes
    logits = shape.vocab_size * value_bytes
    per_token = layers * h * value_bytes + max(layer, logits) if checkpointing else layers * layer + logits
    if not quantized:
        per_token *= FULL_PRECISION_FACTOR
    tokens = rows * row_tokens
    return int(tokens * per_token) + attention_mask_bytes(rows, row_tokens, attention)


def attention_mask_bytes(rows: int, row_tokens: int, attention: Attention) -> int:
    """The 16-bit attention mask SDPA is given: per row, or one over the flattened packed micro-batch."""
    if attention == "flash_varlen":
        return 0
    if attention == "sdpa_packed":
        return 2 * (rows * row_tokens) ** 2
    return 2 * rows * row_tokens**2


def training_peak_bytes(
    shape: ModelShape,
    *,
    quantized: bool,
    lora_params: int,
    rows: int,
    row_tokens: int,
    checkpointing: bool,
    double_quant: bool = True,
    attention: Attention = "sdpa",
) -> int:
    """Peak allocated GPU memory of training with this micro-batch: what torch.cuda.max_memory_allocated shows."""
    return (
        weight_bytes(shape, quantized, double_quant)
        + adapter_bytes(lora_params, quantized)
        + activation_bytes(
            shape,
            rows=rows,
            row_tokens=row_tokens,
            checkpointing=checkpointing,
            quantized=quantized,
            attention=attention,
        )
    )


def device_bytes(peak_allocated: int) -> int:
    """GPU memory a card must have for a run peaking at `peak_allocated`: allocator slack and the CUDA context."""
    return int(peak_allocated * FRAGMENTATION + CUDA_OVERHEAD_BYTES)


def merge_bytes(shape: ModelShape, adapter_file_bytes: int, value_bytes: int = 2) -> int:
    """Peak of merging an adapter into a freshly loaded 16-bit base: the base plus the adapter, which PEFT loads
    in float32 (twice its bf16 file at most)."""
    return shape.parameters * value_bytes + 2 * adapter_file_bytes
