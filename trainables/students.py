"""Student models: a Hugging Face checkpoint, or a tiny LLaMA built from a config; and the
pre-flight check that every student of a spec can be loaded (and adapted) before training starts.

    check_students(spec)   each student's config and tokenizer load; each LoRA target names a layer;
                           each student's tokenizer renders its template
"""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import HfApi, is_offline_mode
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from study.core.spec import LoraSettings, SpecError, StudentSpec, StudySpec, TinyArch
from trainables.templates import template_problem
from trainables.tokenizer import train_tokenizer

HUB_PROBE_TIMEOUT_S = 10.0  # one request; transformers itself retries an unreachable hub for ~25 s


class StudentError(SpecError):
    """A student of the spec that cannot be loaded or adapted as asked (an hf_id that does not
    load, a LoRA target it lacks). A SpecError: the CLI reports it as bad input (exit 2)."""


def _tiny_sizes(arch: TinyArch) -> dict[str, int]:
    return {"hidden_size": arch.width, "intermediate_size": 4 * arch.width, "num_hidden_layers": arch.layers,
            "num_attention_heads": arch.heads, "num_key_value_heads": arch.heads}


def tiny_config(arch: TinyArch, tokenizer: PreTrainedTokenizerBase, max_positions: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        **_tiny_sizes(arch),
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
    """Tiny students share the study tokenizer; hub students bring their own. A study tokenizer
    stored before its tiny students' template needed special tokens is refused, not split."""
    if student.tiny is not None:
        problem = template_problem(study_tokenizer, student.template)
        if problem is not None:
            raise StudentError(f"student '{student.name}': template '{student.template}' cannot be rendered by the "
                               f"study tokenizer: {problem} (it was trained for other students; start a new study)")
        return study_tokenizer
    tokenizer = AutoTokenizer.from_pretrained(student.hf_id)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tiny_templates(spec: StudySpec) -> list[str]:
    """The templates of the spec's tiny students: the special tokens the study tokenizer holds."""
    return [student.template for student in spec.students if student.tiny is not None]


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- pre-flight -----------------------------------------------------------------------------------

def check_students(spec: StudySpec) -> None:
    """Raise `StudentError` for the first student that cannot be loaded, whose tokenizer cannot
    render its template, or (finetune: lora) that lacks a LoRA target. Loads configs and tokenizers
    only; the architecture is built on the meta device (no weights, no memory), so this takes
    seconds even for large students."""
    for student in spec.students:
        config, tokenizer = _student_config(student)
        problem = template_problem(tokenizer, student.template)
        if problem is not None:
            raise StudentError(f"student '{student.name}': template '{student.template}' cannot be rendered: {problem}")
        if spec.training.finetune == "lora":
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config)
            require_lora_targets(model, spec.training.lora, student.name)


def _student_config(student: StudentSpec) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    if student.tiny is not None:
        # the vocabulary does not name layers; the study tokenizer (trained later, on the corpora)
        # has the special tokens of one trained on any text with the same templates
        tokenizer = train_tokenizer(["Question: Answer:"], 300, [student.template])
        return LlamaConfig(vocab_size=256, **_tiny_sizes(student.tiny)), tokenizer
    try:
        return _load_config_and_tokenizer(student.hf_id, local_files_only=True)
    except (OSError, ValueError) as local_error:
        if Path(student.hf_id).is_dir() or is_offline_mode():
            where = "folder" if Path(student.hf_id).is_dir() else "local cache (HF_HUB_OFFLINE is set)"
            raise StudentError(f"student '{student.name}' (hf_id '{student.hf_id}') does not load from its {where}: "
                               f"{_first_line(local_error)}") from None
    _probe_hub(student)
    try:
        return _load_config_and_tokenizer(student.hf_id, local_files_only=False)
    except (OSError, ValueError) as error:
        raise StudentError(f"student '{student.name}' (hf_id '{student.hf_id}') does not load: "
                           f"{_first_line(error)}") from None


def _load_config_and_tokenizer(source: str, local_files_only: bool) -> tuple[PretrainedConfig, PreTrainedTokenizerBase]:
    config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
    return config, AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)


def _probe_hub(student: StudentSpec) -> None:
    """One request to the hub with a timeout, so an unreachable hub or an unknown id fails in
    seconds (transformers would retry for ~25 s, per file)."""
    named = f"student '{student.name}' (hf_id '{student.hf_id}'): not a local folder, not in the local cache"
    try:
        HfApi().model_info(student.hf_id, timeout=HUB_PROBE_TIMEOUT_S)
    except HFValidationError:
        raise StudentError(f"{named}, and not a hub model id either") from None
    except HfHubHTTPError as error:  # the hub answered: no such model, gated, ...
        raise StudentError(f"{named}, and the hub says: {_first_line(error)}") from None
    except Exception as error:  # no answer at all (no network, DNS, timeout): httpx's errors
        raise StudentError(f"{named}, and the hub cannot be reached ({_first_line(error)}); without a network give "
                           "a local folder, or fill the cache and set HF_HUB_OFFLINE=1") from None


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def lora_layers(model: torch.nn.Module) -> list[str]:
    """Names of the layers LoRA can adapt: leaf modules that hold a weight matrix."""
    return [name for name, module in model.named_modules() if not list(module.children())
            and any(key == "weight" and p.dim() >= 2 for key, p in module.named_parameters(recurse=False))]


def require_lora_targets(model: torch.nn.Module, settings: LoraSettings, student_name: str) -> None:
    """Every target names a layer by peft's rule (the full module name, or its last dotted parts).
    peft itself only fails when no target matches anything; a misspelled one would go unnoticed."""
    if settings.targets == ["all-linear"]:
        return
    layers = lora_layers(model)
    for target in settings.targets:
        if not any(name == target or name.endswith(f".{target}") for name in layers):
            known = sorted({name.rsplit(".", 1)[-1] for name in layers})
            raise StudentError(f"student '{student_name}': LoRA target '{target}' matches no layer of the model; "
                               f"its layers are named {known}")
