"""Zero-shot evaluation: greedy generation on the test split, answer extraction and scoring.

Two engines give the same greedy continuations of the same prompt token ids (the training
prompt in the student's template, trainables/templates.py; `plain` is `question_prompt` tokenized
without special tokens):
- `transformers`: left-padded batches through `model.generate` with a KV cache, on the model's
  device; a row stops at EOS or as soon as its answer sentence is complete (`AnswerStop`);
- `vllm` (trainables/vllm_generate.py): the model saved to a temporary folder and run by vLLM's
  offline engine; it stops at EOS or `max_new_tokens` only.
Both hand back token ids, and `finish_output` turns them into the scored text the same way (the
tokens up to the first complete answer sentence, the text cut after that sentence), so the two
engines score the same text and count the same tokens. `engine: auto` is vLLM on a GPU when it is
installed, else transformers.
"""

from __future__ import annotations

import importlib.util
import re
import time
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from study.core.datasets import Problem, extract_answer, problem_text, score
from study.core.datasets.answers import ANSWER_PHRASE
from study.core.spec import EvalSpec
from trainables.templates import prompt_ids as template_prompt_ids
from trainables.vllm_generate import require_vllm, vllm_generate

Engine = Literal["transformers", "vllm"]

# An answer sentence: the scorers' answer phrase ("The answer is", "Answer:"), a claim that is not
# blank, then a line break or a full stop ("!", "?") followed by whitespace. While generating, the
# whitespace must be there, so that "The answer is 3." is not cut before "3.5"; at the end of the
# output (EOS or the token budget) the full stop, or the end itself, closes it. "\boxed{3.5}." and
# "(B)." end the same way.
_CLAIM = r"[^\n]*?\S[^\n]*?"
COMPLETE_ANSWER = re.compile(rf"(?:{ANSWER_PHRASE.pattern}){_CLAIM}(?:(?=\n)|[.!?](?=\s))", re.IGNORECASE)
FINAL_ANSWER = re.compile(rf"(?:{ANSWER_PHRASE.pattern}){_CLAIM}(?:(?=\n)|[.!?](?=\s|$)|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Evaluation:
    predictions: pd.DataFrame  # uid, question, gold, output, answer, correct, generated_tokens
    eval_s: float
    engine: Engine

    @property
    def accuracy(self) -> float:
        return float(self.predictions["correct"].mean())

    @property
    def n_unextractable(self) -> int:
        return int(self.predictions["answer"].isna().sum())

    @property
    def mean_generated_tokens(self) -> float:
        return float(self.predictions["generated_tokens"].mean())


# ---------------------------------------------------------------- the answer convention

def has_complete_answer(text: str) -> bool:
    """Whether generation may stop: `text` holds a finished answer sentence."""
    return COMPLETE_ANSWER.search(text) is not None


def cut_after_answer(text: str) -> str:
    """`text` up to the end of its first answer sentence (all of it when it has none)."""
    found = FINAL_ANSWER.search(text)
    return text[:found.end()] if found else text


def finish_output(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> tuple[str, int]:
    """The scored text and the generated token count of one row of either engine: the tokens before
    EOS (or padding), up to the one that completed the answer sentence, decoded and cut after it."""
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    kept = next((i for i, token in enumerate(token_ids) if token in ends), len(token_ids))
    count = _tokens_to_answer(tokenizer, token_ids[:kept])
    text = tokenizer.decode(token_ids[:count], skip_special_tokens=True).strip()
    return cut_after_answer(text), count


def _tokens_to_answer(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> int:
    """The fewest leading tokens whose text has a complete answer sentence (all when none has):
    where `AnswerStop` stops. A longer prefix keeps a found sentence, so bisection finds it."""
    if not has_complete_answer(tokenizer.decode(token_ids, skip_special_tokens=True)):
        return len(token_ids)
    low, high = 1, len(token_ids)
    while low < high:
        middle = (low + high) // 2
        if has_complete_answer(tokenizer.decode(token_ids[:middle], skip_special_tokens=True)):
            high = middle
        else:
            low = middle + 1
    return low


class AnswerStop(StoppingCriteria):
    """Ends each row of a `generate` batch once its new text has a complete answer sentence."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_tokens: int):
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens  # the left-padded prompt width: new tokens start here

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_tokens:], skip_special_tokens=True)
        return torch.tensor([has_complete_answer(t) for t in texts], dtype=torch.bool, device=input_ids.device)


# ---------------------------------------------------------------- engines

def resolve_engine(engine: Literal["auto", "transformers", "vllm"], device: torch.device) -> Engine:
    """The engine that runs: `auto` is vLLM on a CUDA device when vLLM is installed."""
    if engine == "auto":
        return "vllm" if device.type == "cuda" and importlib.util.find_spec("vllm") is not None else "transformers"
    if engine == "vllm":
        require_vllm(device)  # a missing vLLM fails here, naming the extra to install
    return engine


@torch.inference_mode()
def transformers_generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[list[int]],
                          max_new_tokens: int, batch_size: int) -> list[list[int]]:
    """Greedy new token ids per prompt, in prompt order (rows end in EOS or padding when they stop early).
    Prompts are left-padded per call: the caller's tokenizer (shared with training) is left as it is."""
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))  # similar lengths pad less
    outputs: dict[int, list[int]] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = tokenizer.pad({"input_ids": [prompt_ids[i] for i in chunk]}, padding_side="left",
                                return_tensors="pt").to(model.device)
        width = encoded["input_ids"].shape[1]
        generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                   stopping_criteria=StoppingCriteriaList([AnswerStop(tokenizer, width)]),
                                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        for index, row in zip(chunk, generated[:, width:].tolist()):
            outputs[index] = row
    return [outputs[i] for i in range(len(prompt_ids))]


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: str, problems: list[Problem],
             settings: EvalSpec, template: str = "plain") -> Evaluation:
    """Greedy answers of `model` to `problems` (the training prompt, in the student's `template`),
    scored; `settings.engine` picks the engine (see the module docstring)."""
    started = time.monotonic()
    engine = resolve_engine(settings.engine, model.device)
    model.eval()
    prompt_ids = [template_prompt_ids(tokenizer, template, dataset, problem_text(p)) for p in problems]
    if engine == "vllm":
        generated = vllm_generate(model, tokenizer, prompt_ids, settings.max_new_tokens)
    else:
        generated = transformers_generate(model, tokenizer, prompt_ids, settings.max_new_tokens, settings.batch_size)
    outputs = [finish_output(tokenizer, ids) for ids in generated]
    predictions = pd.DataFrame({
        "uid": [p.uid for p in problems],
        "question": [problem_text(p) for p in problems],
        "gold": [p.answer for p in problems],
        "output": [text for text, _ in outputs],
        "answer": [extract_answer(dataset, text, p.choices) for (text, _), p in zip(outputs, problems)],
        "correct": [score(dataset, text, p.answer, p.choices) for (text, _), p in zip(outputs, problems)],
        "generated_tokens": [n for _, n in outputs],
    })
    return Evaluation(predictions=predictions, eval_s=time.monotonic() - started, engine=engine)
