"""Student models: a Hugging Face checkpoint, or a tiny LLaMA built from a config."""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from study.spec import StudentSpec, TinyArch


def tiny_config(arch: TinyArch, tokenizer: PreTrainedTokenizerBase, max_positions: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.width,
        intermediate_size=4 * arch.width,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def build_student(student: StudentSpec, tokenizer: PreTrainedTokenizerBase, max_positions: int, seed: int) -> PreTrainedModel:
    """Fresh weights for a tiny student (seeded), or the hub checkpoint for an hf_id student."""
    torch.manual_seed(seed)
    if student.tiny is not None:
        return LlamaForCausalLM(tiny_config(student.tiny, tokenizer, max_positions))
    return AutoModelForCausalLM.from_pretrained(student.hf_id, torch_dtype=torch.float32)


def student_tokenizer(student: StudentSpec, study_tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Tiny students share the study tokenizer; hub students bring their own."""
    if student.tiny is not None:
        return study_tokenizer
    tokenizer = AutoTokenizer.from_pretrained(student.hf_id)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
