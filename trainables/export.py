"""A trained student in Hugging Face format: what `cells/<id>/model/` holds, written by rank 0
after evaluation (trainables/train.py), and what `cotstudy export-student` copies out.

    full fine-tune   config.json, model.safetensors, generation_config.json and the tokenizer:
                     AutoModelForCausalLM, AutoTokenizer and vLLM load the folder as it is
    finetune: lora   adapter_config.json and adapter_model.safetensors (peft) and the tokenizer;
                     the adapter config names the base: the student's hf_id, or for a tiny student
                     (built from a config and the cell's seed, on no hub) `base/`, saved beside it;
                     with `export.merge: true` also `merged/`: the adapters merged into the base,
                     a plain model like a full fine-tune's

A cell whose method trains two models (socratic, variant two_model) saves each in its own folder,
`cells/<id>/model/<role>/` (decomposer/, solver/), each laid out as above (`role_folder`); a
one-model cell's student is the folder itself.

The tokenizer carries a chat template that writes the prompt the student was trained on (its
template in study/core/templates.py: a user turn becomes the training prompt, an assistant turn
the separator, the text and EOS), so `apply_chat_template(..., add_generation_prompt=True)` and
chat front ends (vLLM's OpenAI server, lm-evaluation-harness with `--apply_chat_template`) give the
student the prompt ids the evaluation gave it. A `chat` template keeps the tokenizer's own.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from study.core.cells import Cell
from study.core.templates import student_template, template_prompt
from trainables.students import build_student

ADAPTER_CONFIG = "adapter_config.json"
BASE_FOLDER = "base"  # a tiny LoRA student's base: its seeded initial weights
MERGED_FOLDER = "merged"  # export.merge: the adapters merged into the base


def role_folder(folder: Path, roles: tuple[str, ...], role: str) -> Path:
    """Where a role's model is saved in a cell's model folder: the folder itself when the method
    trains one model, else `<role>/` in it."""
    return folder if len(roles) == 1 else folder / role


def student_chat_template(template: str, dataset: str) -> str | None:
    """A Jinja chat template that renders `template`'s training prompt for each user turn (None
    for `chat`: the tokenizer's own template is what the student was trained with). Literal text
    goes in as Jinja string expressions, which the chat renderer's block trimming leaves alone."""
    spec = student_template(template)
    if spec.kind == "chat":
        return None
    marker = "\x00question\x00"
    before, after = template_prompt(template, dataset, marker).split(marker)
    return "".join([
        "{{ bos_token }}" if spec.bos else "",
        "{% for message in messages %}{% if message['role'] == 'user' %}",
        _literal(before), "{{ message['content'] }}", _literal(after),
        "{% elif message['role'] == 'assistant' %}",
        _literal(spec.separator), "{{ message['content'] }}{{ eos_token }}",
        "{% endif %}{% endfor %}",
    ])


def _literal(text: str) -> str:
    return "{{ " + json.dumps(text) + " }}" if text else ""


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, cell: Cell, folder: Path) -> None:
    """The student's tokenizer with its chat template (a copy: the caller's stays as it was)."""
    chat_template = student_chat_template(cell.student.template, cell.corpus.dataset.name)
    saved = copy.deepcopy(tokenizer)
    if chat_template is not None:
        saved.chat_template = chat_template
    saved.save_pretrained(folder)


def save_student(student: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase, cell: Cell,
                 folder: Path) -> None:
    """The trained student and its tokenizer into `folder`; call it before merging a LoRA student
    (merging uses the PeftModel up). A tiny LoRA student's base is rebuilt from its config and seed
    (the same weights training started from and never changed) into `base/`."""
    student.save_pretrained(folder)
    save_tokenizer(tokenizer, cell, folder)
    if isinstance(student, PeftModel) and cell.student.tiny is not None:
        base = build_student(cell.student, tokenizer, cell.train.max_length, cell.seed)
        base.save_pretrained(folder / BASE_FOLDER)
        save_tokenizer(tokenizer, cell, folder / BASE_FOLDER)
        _name_base(folder, BASE_FOLDER)


def _name_base(folder: Path, base: str) -> None:
    config_path = folder / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def save_merged(merged: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cell: Cell, folder: Path) -> None:
    """`export.merge`: the student with its adapters merged, as a plain model."""
    merged.save_pretrained(folder)
    save_tokenizer(tokenizer, cell, folder)


def is_adapter(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


def adapter_base(folder: Path) -> str:
    """Where an adapter folder's base model is: `base/` beside it when the config names that
    (a tiny student), else the config's base (a hub id or a folder)."""
    named = json.loads((folder / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    beside = folder / named
    return str(beside) if named and beside.is_dir() else named


def point_adapter_at_base(folder: Path) -> None:
    """A copied tiny LoRA student: its adapter config names its `base/` by absolute path, so
    AutoPeftModelForCausalLM.from_pretrained(folder) finds it from any working folder."""
    if is_adapter(folder) and (folder / BASE_FOLDER).is_dir():
        _name_base(folder, str((folder / BASE_FOLDER).resolve()))


def merge_adapters(folder: Path, out: Path) -> None:
    """A saved LoRA student (adapters, tokenizer) merged into its base, saved as a plain model."""
    base = AutoModelForCausalLM.from_pretrained(adapter_base(folder), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(out)
