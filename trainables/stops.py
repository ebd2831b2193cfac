"""Stop strings in token space, checked the same way by both evaluation engines (the paper
profile's stop strings, study/core/profiles.py).

A row (or a beam) stops at the token that completes a stop string in its new text: the text of
its last few new tokens (enough to hold the longest stop string, one character per token at
least) holds one. It is checked after every token, so a stop string is caught at the token that
completes it, as vLLM's `SamplingParams(stop=...)` catches it in its output text. Unlike
transformers' own `stop_strings`, the prompt's text is never part of the match (a prompt that
ends in a line break and a continuation that starts with `Problem` do not stop at `\\nProblem`),
and special tokens count by their text (`<|eot_id|>`), as in the scored output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria


def completes_stop(tokenizer: PreTrainedTokenizerBase, new_ids: Sequence[int], stop_strings: tuple[str, ...]) -> bool:
    """Whether the last of `new_ids` completed one of `stop_strings` (given that none was complete
    before it)."""
    window = max(len(stop) for stop in stop_strings) + 1
    tail = tokenizer.decode(list(new_ids[-window:]), skip_special_tokens=False)
    return any(stop in tail for stop in stop_strings)


class StopStringStop(StoppingCriteria):
    """Ends each row of a `generate` batch, or each beam of a beam search (transformers checks
    every candidate beam), at the token that completes a stop string."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_tokens: int, stop_strings: tuple[str, ...]):
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens  # the left-padded prompt width: new tokens start here
        self.stop_strings = stop_strings

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        rows = input_ids[:, self.prompt_tokens:].tolist()
        return torch.tensor([completes_stop(self.tokenizer, row, self.stop_strings) for row in rows],
                            dtype=torch.bool, device=input_ids.device)
