"""Student prompt templates, as data: how a question is wrapped before the student reads it, the
same way in training (the prompt part of each example) and in evaluation.

    plain    the data set's own prompt (`Question: ...\\nAnswer:`), no special tokens: today's prompt
    llama3   a system turn "You are a helpful assistant.", the user turn, the assistant header; BOS first
    gemma    gemma's user and model turns; BOS first
    alpaca   the alpaca instruction format (the paper's BLOOM students)
    chat     the student tokenizer's own chat template (one user message, the generation prompt)

The llama3, gemma and alpaca texts are those of the paper's evaluator (its `prompt_utils.py`, with
an empty response). Turning a template into token ids needs the student's tokenizer
(trainables/templates.py); this module holds no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from study.core.datasets import RATIONALE_SEPARATOR, question_prompt

TemplateName = Literal["plain", "llama3", "gemma", "alpaca", "chat"]


@dataclass(frozen=True)
class StudentTemplate:
    """One template. `kind` says where its text comes from: the data set's prompt, `text` (a format
    string with `{question}`), or the tokenizer's chat template. `separator` goes between the
    prompt and the rationale; `bos`: the prompt starts with the tokenizer's BOS token; `markers`:
    strings the tokenizer must hold as single tokens for the template to mean what it says."""

    name: TemplateName
    kind: Literal["dataset", "text", "chat"]
    text: str | None = None
    separator: str = ""
    bos: bool = False
    markers: tuple[str, ...] = ()


LLAMA3_TEXT = ("<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n")
GEMMA_TEXT = "<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"
ALPACA_TEXT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
               "request.\n\n### Instruction:\n{question}\n\n### Response:")

TEMPLATES: dict[str, StudentTemplate] = {t.name: t for t in (
    StudentTemplate("plain", "dataset", separator=RATIONALE_SEPARATOR),
    StudentTemplate("llama3", "text", LLAMA3_TEXT, bos=True,
                    markers=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")),
    StudentTemplate("gemma", "text", GEMMA_TEXT, bos=True, markers=("<start_of_turn>", "<end_of_turn>")),
    StudentTemplate("alpaca", "text", ALPACA_TEXT, separator=" "),
    StudentTemplate("chat", "chat"),
)}


def student_template(name: str) -> StudentTemplate:
    return TEMPLATES[name]


def template_markers(names: Iterable[str]) -> tuple[str, ...]:
    """The markers of the templates `names`, each once, in a fixed order (a tokenizer that holds
    them as special tokens gets the same ids whatever order the students come in)."""
    wanted = set(names)
    return tuple(dict.fromkeys(m for name, t in TEMPLATES.items() if name in wanted for m in t.markers))


def template_prompt(name: str, dataset: str, question: str) -> str:
    """The prompt text of a `dataset` or `text` template for a `problem_text` (BOS not included;
    a `chat` template is rendered by the tokenizer)."""
    template = TEMPLATES[name]
    if template.kind == "dataset":
        return question_prompt(dataset, question)
    if template.kind == "text":
        return template.text.format(question=question)
    raise ValueError(f"template '{name}' is rendered by the student's tokenizer, not as text")
