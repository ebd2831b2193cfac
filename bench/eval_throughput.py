"""Evaluation throughput: our evaluator against a per-example `model.generate` loop, in one run.

The same student and the same prompts for every path: the SVAMP test split (300 problems, the
paper's split, loaded by study.core.datasets from SVAMP.json) in the training prompt
(`question_prompt`), greedy, at most `--max-new-tokens` new tokens each:
- `per-example generate`: one `model.generate` call per problem (batch of one, KV cache), the
  loop an evaluation script writes first; timed before and after the others (the machine's speed
  drifts) and ratios use the mean of the two;
- `evaluator (transformers)`: `trainables.evaluate.evaluate(engine="transformers")`: left-padded
  batches of `--batch-size` with the answer-sentence stop, plus scoring;
- `evaluator (vllm)` (with `--vllm`, when vLLM is installed): `evaluate(engine="vllm")`, the whole
  call: saving the model, the child process, vLLM's start-up, generation, scoring. Its start-up is
  shown apart, as the time of the same call on one problem.
The student is a tiny random LLaMA (2 layers, width 64, 2 heads: vLLM's CPU attention needs a
head size of 32 or more), with a BPE tokenizer trained on the prompts (trainables/tokenizer.py).
Random weights never write an answer sentence, so rows run to EOS or to `--max-new-tokens`:
generated tokens/s is the honest measure, problems/s is shown beside it. Tokens are counted
before EOS, as the evaluator counts them. One torch thread, as a study's trials use. `agree` is
the share of problems whose output text equals the per-example loop's (batching changes float
rounding, rarely the greedy token).

CPU (this 2-core machine; about 2 minutes, most of it the per-example loop and vLLM's start):
    python bench/eval_throughput.py --data ../shared/data/svamp
    python bench/eval_throughput.py --data ../shared/data/svamp --vllm

Measured 2026-11-24 on this machine (CPU, 2 cores, one torch thread; 300 problems, 64 new tokens
at most), `--vllm`:
                                     run 1                       run 2
    path                        tokens/s  x base  wall s    tokens/s  x base  wall s
    per-example generate, before     474    0.92    40.5         461    1.03    41.7
    evaluator (transformers)      11,095   21.5      1.7       9,538   21.4      2.0
    evaluator (vllm)               1,339    2.6     14.3       1,102    2.5     17.4
    per-example generate, after      556    1.08    34.5         431    0.97    44.5
All rows ran to 64 tokens (19,200 in all; no EOS), so problems/s is tokens/s / 64 (evaluator
173 and 149 problems/s against 7-9); every output equalled the loop's (agree 1.00). vLLM's
row is almost all start-up: the same call on one problem took 14.1 s (16.4 s), so generating
300 x 64 tokens took ~0.2-1 s of it; for a tiny CPU student the transformers engine is the
faster whole call.
It prints a table and one JSON line (`--out FILE` writes the JSON too).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.core.datasets import Problem, load_split, problem_text, question_prompt  # noqa: E402
from study.core.spec import DatasetSpec, EvalSpec  # noqa: E402
from trainables.evaluate import Evaluation, evaluate  # noqa: E402
from trainables.tokenizer import train_tokenizer  # noqa: E402

TINY = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
BASELINE = "per-example generate"


@dataclass(frozen=True)
class Run:
    path: str
    problems: int
    generated_tokens: int
    wall_time_s: float
    start_s: float | None  # vLLM only: the same call on one problem (save, child, engine start)
    agree: float | None  # share of outputs equal to the per-example loop's

    @property
    def problems_per_s(self) -> float:
        return self.problems / self.wall_time_s

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.wall_time_s


def build_student(problems: list[Problem], device: torch.device) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    prompts = [question_prompt("svamp", problem_text(p)) for p in problems]
    tokenizer = train_tokenizer(prompts, vocab_size=1024)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                         **TINY)
    return LlamaForCausalLM(config).to(device).eval(), tokenizer


@torch.inference_mode()
def per_example_generate(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, problems: list[Problem],
                         max_new_tokens: int) -> tuple[list[str], int]:
    """The baseline: one greedy `generate` per problem; texts and tokens before EOS."""
    texts, tokens = [], 0
    for problem in problems:
        ids = tokenizer(question_prompt("svamp", problem_text(problem)), add_special_tokens=False,
                        return_tensors="pt").to(model.device)
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids["input_ids"].shape[1]:].tolist()
        new = new[:new.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in new else new
        texts.append(tokenizer.decode(new, skip_special_tokens=True).strip())
        tokens += len(new)
    return texts, tokens


def time_baseline(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, problems: list[Problem],
                  max_new_tokens: int) -> tuple[Run, list[str]]:
    per_example_generate(model, tokenizer, problems[:4], max_new_tokens)  # warm-up
    started = time.perf_counter()
    texts, tokens = per_example_generate(model, tokenizer, problems, max_new_tokens)
    return Run(BASELINE, len(problems), tokens, time.perf_counter() - started, None, None), texts


def time_evaluator(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, problems: list[Problem],
                   settings: EvalSpec, baseline_texts: list[str]) -> Run:
    if settings.engine == "vllm":
        start_s = _timed(lambda: evaluate(model, tokenizer, "svamp", problems[:1], settings))[1]
    else:
        start_s = None
        evaluate(model, tokenizer, "svamp", problems[:settings.batch_size], settings)  # warm-up
    evaluation, wall_time_s = _timed(lambda: evaluate(model, tokenizer, "svamp", problems, settings))
    outputs = list(evaluation.predictions["output"])
    agree = sum(a == b for a, b in zip(outputs, baseline_texts)) / len(problems)
    return Run(f"evaluator ({evaluation.engine})", len(problems), int(evaluation.predictions["generated_tokens"].sum()),
               wall_time_s, start_s, agree)


def _timed(call: Callable[[], Evaluation]) -> tuple[Evaluation, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def report(runs: list[Run], device: str) -> dict:
    baselines = [r for r in runs if r.path == BASELINE]
    base_problems = sum(r.problems_per_s for r in baselines) / len(baselines)
    base_tokens = sum(r.tokens_per_s for r in baselines) / len(baselines)
    print(f"\n{'path':<24} {'problems':>8} {'tokens':>7} {'wall s':>7} {'start s':>7} {'problems/s':>10} "
          f"{'tokens/s':>9} {'x tokens/s':>10} {'agree':>6}")
    rows = []
    for r in runs:
        start = f"{r.start_s:7.1f}" if r.start_s is not None else f"{'-':>7}"
        agree = f"{r.agree:6.2f}" if r.agree is not None else f"{'-':>6}"
        print(f"{r.path:<24} {r.problems:>8} {r.generated_tokens:>7} {r.wall_time_s:>7.2f} {start} "
              f"{r.problems_per_s:>10.2f} {r.tokens_per_s:>9.1f} {r.tokens_per_s / base_tokens:>10.2f} {agree}")
        rows.append({**asdict(r), "problems_per_s": r.problems_per_s, "tokens_per_s": r.tokens_per_s,
                     "problems_per_s_vs_baseline": r.problems_per_s / base_problems,
                     "tokens_per_s_vs_baseline": r.tokens_per_s / base_tokens})
    summary = {"device": device, "results": rows}
    print(json.dumps(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Folder holding SVAMP.json.")
    parser.add_argument("--rows", type=int, default=None, help="The first N test problems (default: all 300).")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64, help="The evaluator's batch (transformers engine).")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and vLLM's on CPU).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vllm", action="store_true", help="Also time the evaluator's vLLM engine.")
    parser.add_argument("--out", type=Path, help="Also write the JSON summary here.")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    problems = load_split(DatasetSpec(name="svamp", path=str(args.data)), "test")[: args.rows]
    model, tokenizer = build_student(problems, torch.device(args.device))
    settings = EvalSpec(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, engine="transformers")

    first, texts = time_baseline(model, tokenizer, problems, args.max_new_tokens)
    runs = [first, time_evaluator(model, tokenizer, problems, settings, texts)]
    if args.vllm and importlib.util.find_spec("vllm") is not None:
        runs.append(time_evaluator(model, tokenizer, problems, settings.model_copy(update={"engine": "vllm"}), texts))
    elif args.vllm:
        print("vllm: not installed (pip install 'cotstudy[cpu-llm]' on CPU); its row is left out", flush=True)
    runs.append(time_baseline(model, tokenizer, problems, args.max_new_tokens)[0])
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {os.cpu_count()} cores"
    summary = report(runs, f"{device}, torch threads {torch.get_num_threads()}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
