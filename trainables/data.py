"""Turning a corpus into training batches: prompt tokens masked from the loss, batches bounded by
a token budget (padded rows x longest, or the documents' own tokens when the batch is packed:
see trainables/packing.py)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedTokenizerBase

from trainables.templates import prompt_ids, rationale_ids

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TeacherTopK:
    """A teacher's k most likely next tokens at each target token of one example, one row per
    target token in order (offline kd, trainables/kd.py): token ids and their log-probabilities."""

    ids: np.ndarray  # int32, (targets, k)
    logprobs: np.ndarray  # float16 as stored, (targets, k)


# The batch entries that carry the teacher's top-k (one row per target token of the batch, in the
# order of `target_ids != IGNORE_INDEX`): what the model never sees.
TEACHER_KEYS = ("teacher_ids", "teacher_logprobs")


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens
    teacher: TeacherTopK | None = field(default=None, compare=False)  # offline kd only

    @property
    def n_targets(self) -> int:
        """Target tokens: the labels a next-token prediction learns (the first token predicts nothing)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)


def teacher_entries(examples: list[Example]) -> dict[str, torch.Tensor]:
    """The examples' teacher top-k rows stacked in their order ({} when they carry none): in
    batch order when the examples are taken row by row, as collation lays them out."""
    if not examples or examples[0].teacher is None:
        return {}
    return {"teacher_ids": torch.from_numpy(np.concatenate([e.teacher.ids for e in examples])).long(),
            "teacher_logprobs": torch.from_numpy(np.concatenate([e.teacher.logprobs for e in examples])).float()}


def encode_example(tokenizer: PreTrainedTokenizerBase, prompt: str, target: str) -> Example:
    """A plain-text prompt and its target (the `plain` template's separator; benchmarks and tests)."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return example_of(prompt_ids, rationale_ids(tokenizer, "plain", target))


def example_of(prompt: list[int], target: list[int]) -> Example:
    return Example(prompt + target, [IGNORE_INDEX] * len(prompt) + target)


@dataclass(frozen=True)
class EncodedCorpus:
    examples: list[Example]
    dropped: int  # rows longer than max_length left out (rule "drop", or no room for any target)
    truncated: int  # rows whose rationale was cut to fit max_length (rule "truncate")


def encode_corpus(tokenizer: PreTrainedTokenizerBase, dataset: str, corpus: pd.DataFrame,
                  max_length: int, overlong: Literal["drop", "truncate"] = "drop",
                  template: str = "plain") -> EncodedCorpus:
    """The corpus as examples of at most max_length tokens, each question in the student's
    `template` (trainables/templates.py); a longer one is dropped or, under "truncate", keeps its
    prompt and the start of its rationale (a row whose prompt leaves no room for a target token is
    dropped). Both counts go into the cell's result, never silently."""
    examples = [
        example_of(prompt_ids(tokenizer, template, dataset, question), rationale_ids(tokenizer, template, rationale))
        for question, rationale in zip(corpus["question"], corpus["rationale"])
    ]
    kept = [e for e in examples if len(e.input_ids) <= max_length]
    truncated = []
    if overlong == "truncate":
        cut = [Example(e.input_ids[:max_length], e.labels[:max_length]) for e in examples if len(e.input_ids) > max_length]
        truncated = [e for e in cut if any(label != IGNORE_INDEX for label in e.labels)]
    if not kept and not truncated:
        raise ValueError(f"every corpus row is longer than max_length={max_length} tokens")
    return EncodedCorpus(kept + truncated, len(examples) - len(kept) - len(truncated), len(truncated))


def mean_target_tokens(examples: list[Example]) -> float:
    """Mean rationale length in tokens (the tokens the loss sees, EOS included)."""
    return sum(sum(1 for label in e.labels if label != IGNORE_INDEX) for e in examples) / len(examples)


def batch_indices(examples: list[Example], tokens_per_batch: int, seed: int,
                  examples_per_batch: int | None = None, packed: bool = False) -> list[list[int]]:
    """One epoch of shuffled batches: `examples_per_batch` rows each when set (the paper's fixed
    batch), else as many examples as fit tokens_per_batch: counted padded (rows x longest), or
    as their own tokens when the batch will be packed."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = total = 0
    for index in order:
        length = len(examples[index].input_ids)
        if examples_per_batch is not None:
            full = len(current) == examples_per_batch
        elif packed:
            full = total + length > tokens_per_batch
        else:
            full = max(longest, length) * (len(current) + 1) > tokens_per_batch
        if current and full:
            batches.append(current)
            current, longest, total = [], 0, 0
        current.append(index)
        longest = max(longest, length)
        total += length
    if current:
        batches.append(current)
    return batches


def split_batch(batch: list[int], world: int) -> list[list[int]]:
    """One step's examples as `world` shares whose sizes differ by at most one, the larger first
    (64 on 3 workers: 22, 21, 21). The loss is averaged per target token over the whole step
    (trainables/step.py), so unequal shares weigh every example the same."""
    size, extra = divmod(len(batch), world)
    bounds = [rank * size + min(rank, extra) for rank in range(world + 1)]
    return [batch[bounds[rank]:bounds[rank + 1]] for rank in range(world)]


def worker_batches(examples: list[Example], tokens_per_batch: int, seed: int, world: int,
                   examples_per_batch: int | None = None, packed: bool = False) -> list[list[int]]:
    """One epoch of batches in step order, `world` to a step (rank r takes the r-th of each).

    A token budget is per worker, so each worker's batch is one of `batch_indices`. A fixed batch
    (`examples_per_batch`) is per step across workers, so each is split over them; an epoch's
    last batch, when it has fewer examples than there are workers, is left out of that epoch
    (every worker must take part in a step), and the next epoch's shuffle places them elsewhere."""
    batches = batch_indices(examples, tokens_per_batch, seed, examples_per_batch, packed)
    if examples_per_batch is None:
        return batches
    if len(examples) < world:
        raise ValueError(f"{len(examples)} training examples cannot be split over {world} workers")
    return [share for batch in batches if len(batch) >= world for share in split_batch(batch, world)]


def steps_per_epoch(examples: list[Example], tokens_per_batch: int, world_size: int,
                    examples_per_batch: int | None = None, packed: bool = False) -> int:
    batches = worker_batches(examples, tokens_per_batch, 0, world_size, examples_per_batch, packed)
    return max(1, len(batches) // world_size)


def total_steps(epochs: float, max_steps: int | None, per_epoch: int) -> int:
    return max_steps if max_steps is not None else max(1, math.ceil(epochs * per_epoch))


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors; padding is masked from attention and loss."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
