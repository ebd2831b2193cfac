"""Zero-shot evaluation: greedy generation on the test split, answer extraction and scoring.

Batched transformers generation with left padding and a KV cache, stopping at EOS (on the model's
device).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from study.datasets import Problem, extract_answer, problem_text, question_prompt, score


@dataclass(frozen=True)
class Evaluation:
    predictions: pd.DataFrame  # uid, question, gold, output, answer, correct, generated_tokens
    eval_s: float

    @property
    def accuracy(self) -> float:
        return float(self.predictions["correct"].mean())

    @property
    def n_unextractable(self) -> int:
        return int(self.predictions["answer"].isna().sum())


@torch.inference_mode()
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             max_new_tokens: int, batch_size: int) -> list[tuple[str, int]]:
    """Greedy continuations (text, generated token count), in prompt order."""
    tokenizer.padding_side = "left"
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
    outputs: dict[int, tuple[str, int]] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new_tokens = generated[:, encoded["input_ids"].shape[1]:]
        for index, row in zip(chunk, new_tokens):
            kept = row[row != tokenizer.pad_token_id]
            kept = kept[kept != tokenizer.eos_token_id]
            outputs[index] = (tokenizer.decode(kept, skip_special_tokens=True).strip(), int(len(kept)))
    return [outputs[i] for i in range(len(prompts))]


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: str, problems: list[Problem],
             max_new_tokens: int, batch_size: int) -> Evaluation:
    started = time.monotonic()
    model.eval()
    prompts = [question_prompt(dataset, problem_text(p)) for p in problems]
    outputs = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    predictions = pd.DataFrame({
        "uid": [p.uid for p in problems],
        "question": [problem_text(p) for p in problems],
        "gold": [p.answer for p in problems],
        "output": [text for text, _ in outputs],
        "answer": [extract_answer(dataset, text, p.choices) for (text, _), p in zip(outputs, problems)],
        "correct": [score(dataset, text, p.answer, p.choices) for (text, _), p in zip(outputs, problems)],
        "generated_tokens": [n for _, n in outputs],
    })
    return Evaluation(predictions=predictions, eval_s=time.monotonic() - started)
