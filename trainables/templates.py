"""A student template (study/core/templates.py) turned into token ids with the student's tokenizer,
and the check that the tokenizer can render it.

`prompt_ids` is the one place a question becomes the student's prompt ids, for training examples
(trainables/data.py) and evaluation (trainables/evaluate.py) alike. `plain` gives exactly the
ids the project always used: the data set's prompt tokenized without special tokens.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from study.core.templates import StudentTemplate, student_template, template_prompt


def prompt_ids(tokenizer: PreTrainedTokenizerBase, template: str, dataset: str, question: str) -> list[int]:
    """The student's prompt ids for a `problem_text` under `template` (BOS first where it asks)."""
    spec = student_template(template)
    if spec.kind == "chat":
        text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    else:
        text = template_prompt(template, dataset, question)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [tokenizer.bos_token_id, *ids] if spec.bos else ids


def rationale_ids(tokenizer: PreTrainedTokenizerBase, template: str, rationale: str) -> list[int]:
    """The training target after the prompt: the template's separator, the rationale, EOS."""
    separator = student_template(template).separator
    return tokenizer(separator + rationale, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def template_problem(tokenizer: PreTrainedTokenizerBase, template: str) -> str | None:
    """Why `tokenizer` cannot render `template` (None when it can)."""
    spec = student_template(template)
    if spec.kind == "chat" and not tokenizer.chat_template:
        return "its tokenizer has no chat template"
    if spec.bos and tokenizer.bos_token_id is None:
        return "its tokenizer has no BOS token"
    return _missing_markers(tokenizer, spec)


def _missing_markers(tokenizer: PreTrainedTokenizerBase, spec: StudentTemplate) -> str | None:
    split = [m for m in spec.markers if len(tokenizer(m, add_special_tokens=False)["input_ids"]) != 1]
    return f"its tokenizer does not hold {split} as single tokens" if split else None
