"""Students' architectures as numbers, known without downloading anything: what the planner
(study/core/planner.py) sizes memory, FLOPs and checkpoints from.

    architecture_of_tiny(arch, vocab_size)   a tiny student (study/core/spec.py TinyArch)
    HUB_ARCHITECTURES["google/gemma-2b"]      the paper's seven students and a few others
    architecture_of_config(config, source)    a transformers config.json (a local student folder)

Three families cover them: `llama` (LLaMA, Mistral, Qwen2: RMSNorm, rotary attention through
sdpa / flash attention, a gated MLP), `gemma` (the same layer shape, gelu gate) and `bloom`
(LayerNorm with biases, a fused query-key-value matrix, ALiBi attention that transformers computes
eagerly, so its scores cost memory per row length squared, and a plain 4x MLP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from study.core.hardware import FlopCount
from study.core.spec import TinyArch

Family = Literal["llama", "gemma", "bloom"]


@dataclass(frozen=True)
class Linear:
    name: str  # the module's name in transformers (what LoRA targets name)
    inputs: int
    outputs: int
    bias: bool = False

    @property
    def parameters(self) -> int:
        return self.inputs * self.outputs + (self.outputs if self.bias else 0)


@dataclass(frozen=True)
class Architecture:
    family: Family
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    tied_embeddings: bool
    qkv_bias: bool = False  # Qwen2
    source: str = ""  # where these numbers come from

    @property
    def packs_documents_apart(self) -> bool:
        """Whether packed documents stay apart in this family's attention (position ids restarting
        at each document). BLOOM's ALiBi attention takes no position ids: the trainer finds that
        out on the model itself (trainables.packing.keeps_documents_apart) and trains it on padded
        rows, so the planner sizes those."""
        return self.family != "bloom"

    @property
    def query_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_linears(self) -> list[Linear]:
        """One decoder layer's weight matrices."""
        h, q, kv, i = self.hidden, self.query_width, self.kv_width, self.intermediate
        if self.family == "bloom":
            return [Linear("query_key_value", h, 3 * h, True), Linear("dense", h, h, True),
                    Linear("dense_h_to_4h", h, 4 * h, True), Linear("dense_4h_to_h", 4 * h, h, True)]
        return [Linear("q_proj", h, q, self.qkv_bias), Linear("k_proj", h, kv, self.qkv_bias),
                Linear("v_proj", h, kv, self.qkv_bias), Linear("o_proj", q, h),
                Linear("gate_proj", h, i), Linear("up_proj", h, i), Linear("down_proj", i, h)]

    @property
    def norm_parameters(self) -> int:
        """Per norm: RMSNorm has a weight, LayerNorm a weight and a bias."""
        return 2 * self.hidden if self.family == "bloom" else self.hidden

    @property
    def layer_parameters(self) -> int:
        return sum(linear.parameters for linear in self.layer_linears()) + 2 * self.norm_parameters

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden

    @property
    def root_parameters(self) -> int:
        """What is not in a decoder layer: embeddings (and an untied head), the final norm (and
        BLOOM's embedding norm). The unit FSDP2 shards as the root."""
        embeddings = self.embedding_parameters * (1 if self.tied_embeddings else 2)
        norms = self.norm_parameters * (2 if self.family == "bloom" else 1)
        return embeddings + norms

    @property
    def parameters(self) -> int:
        return self.layers * self.layer_parameters + self.root_parameters

    def lora_parameters(self, rank: int, targets: list[str]) -> int:
        """Adapter parameters: rank x (in + out) per adapted matrix; `all-linear` adapts every
        decoder-layer matrix (peft leaves the LM head out)."""
        adapted = [m for m in self.layer_linears() if targets == ["all-linear"] or m.name in targets]
        return self.layers * sum(rank * (m.inputs + m.outputs) for m in adapted)

    def flop_count(self, lora_rank: int | None = None, lora_targets: list[str] | None = None) -> FlopCount:
        """FLOPs as trainables.accounting counts them on the built model: 6 per trained matmul
        parameter and token, 4 per frozen one (a LoRA run's base and head)."""
        matmul = self.layers * sum(m.inputs * m.outputs for m in self.layer_linears())
        if lora_rank is None:
            return FlopCount(6 * matmul, 6 * self.embedding_parameters, self.layers * self.hidden)
        adapters = self.lora_parameters(lora_rank, lora_targets or ["all-linear"])
        return FlopCount(4 * matmul + 6 * adapters, 4 * self.embedding_parameters, self.layers * self.hidden)


def architecture_of_tiny(arch: TinyArch, vocab_size: int) -> Architecture:
    """As trainables.students.tiny_config builds it: a LLaMA with a 4x MLP and tied embeddings."""
    return Architecture("llama", vocab_size, arch.width, arch.layers, arch.heads, arch.heads, arch.width // arch.heads,
                        4 * arch.width, tied_embeddings=True, source="tiny")


def _llama(vocab: int, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, source: str,
           family: Family = "llama", head_dim: int | None = None, qkv_bias: bool = False) -> Architecture:
    return Architecture(family, vocab, hidden, layers, heads, kv_heads, head_dim or hidden // heads, intermediate,
                        tied_embeddings=True, qkv_bias=qkv_bias, source=source)


def _bloom(hidden: int, layers: int, heads: int, source: str) -> Architecture:
    return Architecture("bloom", 250880, hidden, layers, heads, heads, hidden // heads, 4 * hidden,
                        tied_embeddings=True, source=source)


# Each model's config.json on the Hugging Face hub (vocab, hidden, layers, heads, kv heads,
# intermediate; all tie their embeddings). Parameter counts they give, checked against transformers'
# own models in tests/test_planner.py: bloom-560m 559,214,592; bloom-1b1 1,065,314,304; bloom-1b7
# 1,722,408,960; bloom-3b 3,002,557,440; gemma-2b 2,506,172,416; Llama-3.2-1B 1,235,814,400;
# Llama-3.2-3B 3,212,749,824; Qwen2.5-0.5B 494,032,768; Qwen2.5-1.5B 1,543,714,304.
_HUB = {
    "bigscience/bloom-560m": _bloom(1024, 24, 16, "bigscience/bloom-560m config.json"),
    "bigscience/bloom-1b1": _bloom(1536, 24, 16, "bigscience/bloom-1b1 config.json"),
    "bigscience/bloom-1b7": _bloom(2048, 24, 16, "bigscience/bloom-1b7 config.json"),
    "bigscience/bloom-3b": _bloom(2560, 30, 32, "bigscience/bloom-3b config.json"),
    "google/gemma-2b": _llama(256000, 2048, 18, 8, 1, 16384, "google/gemma-2b config.json", "gemma", head_dim=256),
    "meta-llama/Llama-3.2-1B": _llama(128256, 2048, 16, 32, 8, 8192, "meta-llama/Llama-3.2-1B config.json"),
    "meta-llama/Llama-3.2-3B": _llama(128256, 3072, 28, 24, 8, 8192, "meta-llama/Llama-3.2-3B config.json"),
    "Qwen/Qwen2.5-0.5B": _llama(151936, 896, 24, 14, 2, 4864, "Qwen/Qwen2.5-0.5B config.json", qkv_bias=True),
    "Qwen/Qwen2.5-1.5B": _llama(151936, 1536, 28, 12, 2, 8960, "Qwen/Qwen2.5-1.5B config.json", qkv_bias=True),
}
# instruction-tuned releases share their base's architecture
_VARIANTS = {"google/gemma-2b-it": "google/gemma-2b", "meta-llama/Llama-3.2-1B-Instruct": "meta-llama/Llama-3.2-1B",
             "meta-llama/Llama-3.2-3B-Instruct": "meta-llama/Llama-3.2-3B",
             "Qwen/Qwen2.5-0.5B-Instruct": "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B-Instruct": "Qwen/Qwen2.5-1.5B"}
HUB_ARCHITECTURES: dict[str, Architecture] = {**_HUB, **{variant: _HUB[base] for variant, base in _VARIANTS.items()}}

_CONFIG_FAMILIES: dict[str, Family] = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "gemma",
                                       "bloom": "bloom"}


def architecture_of_config(config: dict, source: str) -> Architecture | None:
    """From a transformers config.json; None for a model type not covered here."""
    family = _CONFIG_FAMILIES.get(config.get("model_type", ""))
    if family is None:
        return None
    if family == "bloom":
        return Architecture("bloom", config["vocab_size"], config["hidden_size"], config["n_layer"], config["n_head"],
                            config["n_head"], config["hidden_size"] // config["n_head"], 4 * config["hidden_size"],
                            tied_embeddings=True, source=source)
    heads = config["num_attention_heads"]
    return Architecture(family, config["vocab_size"], config["hidden_size"], config["num_hidden_layers"], heads,
                        config.get("num_key_value_heads") or heads, config.get("head_dim") or config["hidden_size"] // heads,
                        config["intermediate_size"], tied_embeddings=config.get("tie_word_embeddings", family != "llama"),
                        qkv_bias=config["model_type"] == "qwen2", source=source)
