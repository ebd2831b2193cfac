"""Zero-shot evaluation: generation on the test split (as the evaluation profile says), answer
extraction and scoring.

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

That is the `robust` profile. Under `evaluation.profile: paper` (study/core/profiles.py) the
decoding is the paper's: beam search or greedy per kind of task, its new-token limits, no
answer-sentence stop; a row, or a beam, stops at the token that completes one of the paper's stop
strings in its new text (trainables/stops.py; vLLM greedy: `SamplingParams(stop=...)`), and its
text is cut before it; on a GPU the student runs in bf16. Beam search: vLLM's beam-search loop with
stop strings (trainables/vllm_generate.py), or transformers' `num_beams` with its finished beams
ranked by vLLM's score (`_beam_search`, which says what still differs). Every output is scored
twice: `correct` by the project's scorer, `correct_paper` by the paper's answer rules.
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from study.core.datasets import Problem, extract_answer, extract_paper_answer, problem_text, score, score_paper
from study.core.datasets.answers import ANSWER_PHRASE
from study.core.profiles import Decoding, decoding
from study.core.spec import EvalSpec, SpecError, StudySpec
from trainables.stops import StopStringStop
from trainables.templates import prompt_ids as template_prompt_ids
from trainables.vllm_generate import (
    VLLM_LENGTH_PENALTY,
    VllmEngineError,
    installed_vllm,
    require_beam_search,
    require_vllm,
    vllm_beam_score,
    vllm_generate,
)

Engine = Literal["transformers", "vllm"]

# An answer sentence: the scorers' answer phrase ("The answer is", "Answer:"), a claim that is not
# blank, then a line break or a full stop ("!", "?") followed by whitespace. While generating, the
# whitespace must be there, so that "The answer is 3." is not cut before "3.5"; at the end of the
# output (EOS or the token budget) the full stop, or the end itself, closes it. "\boxed{3.5}." and
# "(B)." end the same way. The claim is written so that it has one way to match each text (spaces,
# the first non-space, then the rest, lazily): `[^\n]*?\S[^\n]*?` matched the same but tried every
# split of a line without an end, cubic in its length, and a tiny student's run-on line of repeated
# "the answer is" held one evaluation for 10 minutes.
_CLAIM = r"[^\S\n]*\S[^\n]*?"
COMPLETE_ANSWER = re.compile(rf"(?:{ANSWER_PHRASE.pattern}){_CLAIM}(?:(?=\n)|[.!?](?=\s))", re.IGNORECASE)
FINAL_ANSWER = re.compile(rf"(?:{ANSWER_PHRASE.pattern}){_CLAIM}(?:(?=\n)|[.!?](?=\s|$)|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Evaluation:
    predictions: pd.DataFrame  # uid, question, gold, output, answer, correct, answer_paper, correct_paper, generated_tokens
    eval_s: float
    engine: Engine

    @property
    def accuracy(self) -> float:
        return float(self.predictions["correct"].mean())

    @property
    def accuracy_paper(self) -> float:
        """The same outputs read by the paper's answer rules (study/core/datasets/paper_answers.py)."""
        return float(self.predictions["correct_paper"].mean())

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
    kept = tokens_before_end(tokenizer, token_ids)
    count = _fewest_tokens(tokenizer, kept, has_complete_answer)
    text = tokenizer.decode(kept[:count], skip_special_tokens=True).strip()
    return cut_after_answer(text), count


def finish_stopped_output(tokenizer: PreTrainedTokenizerBase, token_ids: list[int],
                          stop_strings: tuple[str, ...]) -> tuple[str, int]:
    """The paper profile's text and token count of one row: the tokens before EOS (or padding), up
    to the one that completed a stop string, decoded (special tokens kept, as vLLM's text is) and
    cut before the stop string."""
    kept = tokens_before_end(tokenizer, token_ids)

    def has_stop(text: str) -> bool:
        return any(stop in text for stop in stop_strings)

    count = _fewest_tokens(tokenizer, kept, has_stop, skip_special_tokens=False)
    text = tokenizer.decode(kept[:count], skip_special_tokens=False)
    cut = min((text.index(stop) for stop in stop_strings if stop in text), default=len(text))
    return text[:cut].strip(), count


def tokens_before_end(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> list[int]:
    """A generated row's tokens before its EOS (or padding, where a batch's row stopped early)."""
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return token_ids[:next((i for i, token in enumerate(token_ids) if token in ends), len(token_ids))]


def _fewest_tokens(tokenizer: PreTrainedTokenizerBase, token_ids: list[int], found: Callable[[str], bool],
                   skip_special_tokens: bool = True) -> int:
    """The fewest leading tokens whose text `found` something in (all when none has): where
    `AnswerStop` stops for the answer sentence. A longer prefix keeps what was found, so bisection
    finds it."""
    def holds(count: int) -> bool:
        return found(tokenizer.decode(token_ids[:count], skip_special_tokens=skip_special_tokens))

    if not holds(len(token_ids)):
        return len(token_ids)
    low, high = 1, len(token_ids)
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
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


def check_beam_search(spec: StudySpec) -> None:
    """Before training: `profile: paper` beam-searches commonsense tasks, which a vLLM the cells
    would evaluate with (`engine: vllm`, or `auto` on GPU workers) must be able to do."""
    evaluation = spec.evaluation
    beams = any(decoding(evaluation.profile, d.name, evaluation.max_new_tokens).beams > 1 for d in spec.datasets)
    on_vllm = evaluation.engine == "vllm" or (evaluation.engine == "auto" and spec.resources.gpus_per_worker > 0
                                               and installed_vllm() is not None)
    if beams and on_vllm:
        try:
            require_beam_search()
        except VllmEngineError as error:
            raise SpecError(f"evaluation.profile: {error}") from None


@torch.inference_mode()
def transformers_generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[list[int]],
                          max_new_tokens: int, batch_size: int, beams: int = 1, stop_at_answer: bool = True,
                          stop_strings: tuple[str, ...] = ()) -> list[list[int]]:
    """Greedy (or, with `beams` > 1, beam-search) new token ids per prompt, in prompt order (rows end
    in EOS or padding when they stop early); `stop_at_answer`: a row stops once its answer sentence
    is complete; `stop_strings`: a row, or a beam, stops at the token that completes one
    (trainables/stops.py). Prompts are left-padded per call: the caller's tokenizer (shared with
    training) is left as it is."""
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))  # similar lengths pad less
    outputs: dict[int, list[int]] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        encoded = tokenizer.pad({"input_ids": [prompt_ids[i] for i in chunk]}, padding_side="left",
                                return_tensors="pt").to(model.device)
        width = encoded["input_ids"].shape[1]
        stops = StoppingCriteriaList([AnswerStop(tokenizer, width)] if stop_at_answer else [])
        if stop_strings:
            stops.append(StopStringStop(tokenizer, width, stop_strings))
        settings = {"max_new_tokens": max_new_tokens, "do_sample": False, "stopping_criteria": stops,
                    "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
        rows = _beam_search(model, encoded, beams, settings) if beams > 1 else \
            model.generate(**encoded, **settings)[:, width:].tolist()
        outputs.update(zip(chunk, rows))
    return [outputs[i] for i in range(len(prompt_ids))]


def _beam_search(model: PreTrainedModel, encoded: BatchEncoding, beams: int, settings: dict) -> list[list[int]]:
    """transformers' beam search, its finished beams ranked as vLLM ranks them.

    transformers keeps the `beams` best finished beams of each prompt by its own score (the
    log-probability over the new tokens' count, EOS included); vLLM (the paper's engine) picks the
    best by the log-probability over the whole sequence's length (prompt included, a final EOS
    not), which favours short answers more. All `beams` hypotheses come back, each is scored again
    with one forward pass, and the best by vLLM's score is kept. `early_stopping="never"`: no
    heuristic stop (vLLM searches to the token budget). What may still differ from vLLM: the
    beams transformers let finish (those among the best `beams` candidates of a step; vLLM keeps
    every candidate that ends) and, with it, the finished beams it keeps."""
    width = encoded["input_ids"].shape[1]
    generated = model.generate(**encoded, **settings, num_beams=beams, num_return_sequences=beams,
                               length_penalty=VLLM_LENGTH_PENALTY, early_stopping="never",
                               return_dict_in_generate=True)
    new_counts = (generated.beam_indices >= 0).sum(-1).tolist()  # each hypothesis's new tokens, its last included
    prompt_counts = encoded["attention_mask"].sum(-1).tolist()
    rows: list[list[int]] = []
    for prompt in range(len(prompt_counts)):
        hypotheses = range(prompt * beams, (prompt + 1) * beams)
        logprobs = _logprobs(model, generated.sequences[hypotheses.start:hypotheses.stop],
                             encoded["attention_mask"][prompt], [new_counts[h] for h in hypotheses])
        tokens = [generated.sequences[h, width:width + new_counts[h]].tolist() for h in hypotheses]
        scores = [vllm_beam_score(logprob, prompt_counts[prompt], row, settings["eos_token_id"])
                  for logprob, row in zip(logprobs, tokens)]
        rows.append(tokens[scores.index(max(scores))])
    return rows


def _logprobs(model: PreTrainedModel, sequences: torch.Tensor, prompt_mask: torch.Tensor,
              new_counts: list[int]) -> list[float]:
    """The log-probability of each sequence's first `new_counts` new tokens (one forward pass;
    the sequences share one left-padded prompt)."""
    width, longest = prompt_mask.shape[0], max(new_counts)
    sequences = sequences[:, :width + longest]
    counts = torch.tensor(new_counts, device=sequences.device)
    new_mask = torch.arange(longest, device=sequences.device)[None, :] < counts[:, None]
    mask = torch.cat([prompt_mask[None, :].expand(len(new_counts), -1), new_mask.to(prompt_mask.dtype)], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=sequences, attention_mask=mask, position_ids=positions, logits_to_keep=longest + 1).logits
    token_logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, sequences[:, width:, None])[..., 0]
    return (token_logprobs * new_mask).sum(-1).tolist()


def evaluate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: str, problems: list[Problem],
             settings: EvalSpec, template: str = "plain") -> Evaluation:
    """Answers of `model` to `problems` (the training prompt, in the student's `template`), decoded
    as `settings.profile` says and scored twice; `settings.engine` picks the engine (see the module
    docstring)."""
    started = time.monotonic()
    engine = resolve_engine(settings.engine, model.device)
    plan = decoding(settings.profile, dataset, settings.max_new_tokens)
    if plan.beams > 1 and engine == "vllm":
        require_beam_search()
    if plan.bf16_on_gpu and model.device.type == "cuda":
        model = model.to(torch.bfloat16)
    model.eval()
    prompt_ids = [template_prompt_ids(tokenizer, template, dataset, problem_text(p)) for p in problems]
    outputs = [_finish(tokenizer, ids, plan) for ids in _generate(engine, model, tokenizer, prompt_ids, plan, settings)]
    predictions = scored_predictions(dataset, problems, [text for text, _ in outputs], [n for _, n in outputs])
    return Evaluation(predictions=predictions, eval_s=time.monotonic() - started, engine=engine)


def scored_predictions(dataset: str, problems: list[Problem], texts: list[str],
                       generated_tokens: list[int]) -> pd.DataFrame:
    """The predictions table: each problem's output text scored by both scorers."""
    return pd.DataFrame({
        "uid": [p.uid for p in problems],
        "question": [problem_text(p) for p in problems],
        "gold": [p.answer for p in problems],
        "output": texts,
        "answer": [extract_answer(dataset, text, p.choices) for text, p in zip(texts, problems)],
        "correct": [score(dataset, text, p.answer, p.choices) for text, p in zip(texts, problems)],
        "answer_paper": [extract_paper_answer(dataset, text) for text in texts],
        "correct_paper": [score_paper(dataset, text, p.answer) for text, p in zip(texts, problems)],
        "generated_tokens": generated_tokens,
    })


def _generate(engine: Engine, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[list[int]],
              plan: Decoding, settings: EvalSpec) -> list[list[int]]:
    if engine == "vllm":
        return vllm_generate(model, tokenizer, prompt_ids, plan.max_new_tokens, plan.beams, plan.stop_strings)
    return transformers_generate(model, tokenizer, prompt_ids, plan.max_new_tokens, settings.batch_size, plan.beams,
                                 plan.stop_at_answer, plan.stop_strings)


def _finish(tokenizer: PreTrainedTokenizerBase, token_ids: list[int], plan: Decoding) -> tuple[str, int]:
    if plan.stop_at_answer:
        return finish_output(tokenizer, token_ids)
    return finish_stopped_output(tokenizer, token_ids, plan.stop_strings)
