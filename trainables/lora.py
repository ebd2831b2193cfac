"""LoRA fine-tuning (`finetune: lora`): peft adapters on the spec's target layers, every other
weight frozen; for evaluation the adapters are merged into a plain transformers model.

    student = with_lora(build_student(...), cell.train.lora, cell.student.name)
    TargetLoss(student)       # get_decoder / get_output_embeddings reach the adapted layers through peft
    evaluate(merged(student), ...)
"""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from study.core.spec import LoraSettings
from trainables.students import StudentError, require_lora_targets


def with_lora(model: PreTrainedModel, settings: LoraSettings, student_name: str) -> PeftModel:
    """The model with LoRA adapters on the spec's targets; only the adapters require grad."""
    require_lora_targets(model, settings, student_name)  # peft ignores a target that matches nothing
    targets = "all-linear" if settings.targets == ["all-linear"] else list(settings.targets)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as error:  # a named layer of a kind peft cannot adapt
        raise StudentError(f"student '{student_name}': LoRA: {str(error).splitlines()[0]}") from None


def merged(model: PreTrainedModel | PeftModel) -> PreTrainedModel:
    """The model to evaluate: LoRA adapters merged into the weights they adapt, giving a plain
    transformers model (as fast as the base, its parameter count the student's own). Merges in
    place: the PeftModel is used up, so save its adapters first. A full model comes back as is."""
    if not isinstance(model, PeftModel):
        return model
    return model.merge_and_unload()
