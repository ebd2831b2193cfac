"""Peak memory of one Ray Train worker while it trains a cell: what the trainer really keeps
(trainables/train.py, step.py, parallel.py), counted tensor by tensor, without torch.

What the trainer keeps, per layout:
- one worker on a GPU: fp32 master weights (4 bytes per parameter), fp32 gradients (4 per trained
  parameter), AdamW's two fp32 moments (8 per trained parameter; fused AdamW, no temporaries), and
  while a micro-batch's graph lives, autocast's bf16 copy of every matmul weight (2 per parameter):
  the 18 bytes per parameter of the Hugging Face "model training anatomy" for mixed precision;
- on a CPU: fp32 throughout, no bf16 copies (16 bytes per parameter);
- LoRA: gradients and moments of the adapters only; the frozen base still has its weights and
  their bf16 copies;
- DDP over N workers: a full replica each, plus DDP's gradient buckets (4 per trained parameter);
- FSDP2 over N workers: weights, gradients and moments sharded (divided by N), plus the gathered
  bf16 parameters of the root unit (embeddings, final norm) and of two decoder layers at a time
  (the one running and the one prefetched); fp32 gathers on a CPU;
- activations of one micro-batch (rows x row length tokens, padding included), counted per
  decoder layer from the tensors its backward keeps (`layer_activation_bytes`), plus the LM head's
  logits at the target tokens (bf16 logits, their fp32 copy and log-softmax: 10 bytes per
  vocabulary entry on a GPU, 12 in fp32 on a CPU); with activation checkpointing each layer keeps
  only its input and one layer is recomputed at a time. A packed step's rows on the CPU (sdpa)
  carry a boolean document mask (rows x length^2); on a GPU packing runs varlen flash attention,
  no mask. BLOOM computes attention scores eagerly: rows x heads x length^2 per layer.
The peak is at the start of a backward pass: weights, moments, this micro-batch's activations and,
from the second micro-batch of a step on, the gradients of the ones before (one micro-batch: the
tied embedding's gradient, the first computed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from study.core.architectures import Architecture

Device = Literal["cuda", "cpu"]
Sharding = Literal["fsdp", "ddp"]


@dataclass(frozen=True)
class TrainLayout:
    """How a cell's student is trained (from the spec's training and resources)."""

    device: Device
    workers: int = 1
    sharding: Sharding = "fsdp"
    activation_checkpointing: bool = False
    lora_rank: int | None = None  # None: full fine-tuning
    lora_targets: tuple[str, ...] = ("all-linear",)
    lora_dropout: bool = True  # LoRA dropout above 0 (each adapter then keeps a mask and a copy)


@dataclass(frozen=True)
class MicroBatch:
    """One forward pass of one worker: `rows` rows of `row_length` tokens, `targets` of them
    predicted; `per_step` such passes make an optimizer step."""

    rows: int
    row_length: int
    targets: int
    per_step: int = 1

    @property
    def tokens(self) -> int:
        return self.rows * self.row_length


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes at one worker's peak."""

    weights: float
    gradients: float
    optimizer: float
    gathered: float  # bf16 autocast copies, or FSDP's gathered parameters, or DDP's buckets
    activations: float  # decoder layers, attention scores and masks
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.gathered + self.activations + self.logits

    def total_gb(self) -> float:
        return self.total / 2**30


def layer_activation_bytes(arch: Architecture, layout: TrainLayout) -> float:
    """Bytes one decoder layer keeps for backward per token (its attention scores apart).

    The residual stream is fp32 (embeddings are, and autocast's bf16 outputs add into it); matmuls
    and the inputs they keep are bf16 under autocast on a GPU (c = 2), fp32 on a CPU (c = 4). On a
    GPU autocast casts a norm's fp32 output once per matmul reading it (3 for q/k/v, 2 for gate/up);
    on a CPU the matmuls share it. A frozen matmul (LoRA's base) keeps no input; each LoRA adapter
    keeps its dropout's fp32 output and mask (and, on a GPU, autocast's bf16 copy of it) and its
    rank-wide hidden."""
    c = 2 if layout.device == "cuda" else 4
    h, q, kv, i = arch.hidden, arch.query_width, arch.kv_width, arch.intermediate
    if arch.family == "bloom":
        # LN inputs (the residuals), q/k/v copies and gelu's input; kept for the matmuls: the
        # fused qkv and MLP inputs, the attention context, gelu's output
        rest = 8 * h + c * 3 * h + c * 4 * h
        matmul_inputs = 2 * (c * h if layout.device == "cuda" else 4 * h) + c * h + c * 4 * h
    else:
        # residual in and mid, two normalized outputs; rotary (q, k and their rotations), sdpa's q,
        # k, v and output; gate, activation and up; kept for the matmuls: q/k/v and gate/up inputs,
        # o_proj's input, the gated product
        rest = 16 * h + c * (4 * q + 4 * kv) + 3 * c * i
        matmul_inputs = (5 * c * h if layout.device == "cuda" else 2 * 4 * h) + c * q + c * i
    if layout.lora_rank is None:
        return rest + matmul_inputs
    return rest + sum(m.inputs * _lora_input_bytes(layout) + c * layout.lora_rank for m in _adapted(arch, layout))


def _lora_input_bytes(layout: TrainLayout) -> int:
    if layout.lora_dropout:  # fp32 dropout output and its mask, and autocast's bf16 copy on a GPU
        return 7 if layout.device == "cuda" else 5
    return 2 if layout.device == "cuda" else 4  # lora_A keeps its input (or autocast's copy)


def _adapted(arch: Architecture, layout: TrainLayout) -> list:
    targets = list(layout.lora_targets)
    return [m for m in arch.layer_linears() if targets == ["all-linear"] or m.name in targets]


def attention_score_bytes(arch: Architecture, device: Device, batch: MicroBatch) -> float:
    """Per layer and micro-batch: BLOOM's eager scores (its fp32 softmax, and the bf16 cast of it on
    a GPU); none for sdpa / flash attention. BLOOM is never packed (Architecture.packs_documents_apart)."""
    if arch.family != "bloom":
        return 0.0
    return arch.heads * batch.rows * batch.row_length**2 * (6 if device == "cuda" else 4)


def mask_bytes(arch: Architecture, device: Device, batch: MicroBatch, masked: bool) -> float:
    """Rows packed at a pack_length through sdpa on a CPU carry one boolean document mask for all
    layers (length-grouped rows, one document each, need none)."""
    return batch.rows * batch.row_length**2 if masked and device == "cpu" and arch.packs_documents_apart else 0.0


def estimate_memory(arch: Architecture, layout: TrainLayout, batch: MicroBatch, masked: bool = False) -> MemoryEstimate:
    parameters = arch.parameters
    trained = (parameters if layout.lora_rank is None
               else arch.lora_parameters(layout.lora_rank, list(layout.lora_targets)))
    matmul = arch.layers * sum(m.inputs * m.outputs for m in arch.layer_linears()) + arch.embedding_parameters  # + head
    sharded = layout.workers if layout.workers > 1 and layout.sharding == "fsdp" else 1
    weights, gradients, optimizer = 4 * parameters / sharded, 4 * trained / sharded, 8 * trained / sharded
    gathered = _gathered(arch, layout, trained, matmul)
    per_layer = batch.tokens * layer_activation_bytes(arch, layout) + attention_score_bytes(arch, layout.device, batch)
    mask = mask_bytes(arch, layout.device, batch, masked)
    logits = batch.targets * (10 if layout.device == "cuda" else 12) * arch.vocab_size
    if layout.activation_checkpointing:
        # every layer keeps its fp32 input; a layer is recomputed in backward after the logits are gone
        activations = batch.tokens * arch.layers * 4 * arch.hidden + max(0.0, per_layer - logits) + mask
    else:
        activations = arch.layers * per_layer + mask
    # one micro-batch per step: only the embedding's gradient is there at the peak; more: all of them
    held = gradients if batch.per_step > 1 or layout.lora_rank is not None else min(
        gradients, 4 * arch.embedding_parameters / sharded)
    return MemoryEstimate(weights, held, optimizer, gathered, activations, logits)


def _gathered(arch: Architecture, layout: TrainLayout, trained: int, matmul: int) -> float:
    """What a layout holds besides sharded states and activations."""
    if layout.workers > 1 and layout.sharding == "fsdp":
        width = 2 if layout.device == "cuda" else 4
        return width * (arch.root_parameters + 2 * arch.layer_parameters)
    autocast_copies = 2 * matmul if layout.device == "cuda" else 0
    buckets = 4 * trained if layout.workers > 1 else 0  # DDP
    return autocast_copies + buckets
