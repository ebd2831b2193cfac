"""Step cost of white-box distillation (trainables/kd.py) against SFT, and the size of the stored
teacher log-probs.

Same student (same initial weights), same corpus, same batches, one run: each round takes one
optimizer step of SFT, of KD offline (the teacher's stored top-k read with the batch) and of KD
online (the frozen teacher's forward inside the step), in turn, so machine load hits all three
alike (A/B/C alternation); the ratio is the median step time over SFT's. Then the stored top-k
of the whole corpus at k = 8, 20, 64, written as a study writes them (compressed npz: token ids
uint16 when the vocabulary fits, log-probs float16), in bytes per target token.

Corpus: the arith data set (generated, no download) rendered by the program teacher at level 3
(cot), encoded as a study encodes it; a BPE study tokenizer trained on the fly. Student: tiny
LLaMA (2 layers, width 64); teacher: tiny LLaMA (4 layers, width 128), random weights (cost does
not depend on what the weights are). One torch thread, as a study's trials use:
    python bench/kd_step_cost.py            (about two minutes on an idle 2-core machine)
    python bench/kd_step_cost.py --rounds 60 --teacher-layers 8 --teacher-width 256

Measured 2026-12-02 on a shared, loaded 2-core machine (defaults; 30 then 40 rounds):
    sft 0.279 / 0.263 s per step; kd offline 1.18x / 1.06x; kd online 2.99x / 2.70x
    offline top-k of the corpus 19.4 / 21.5 s (once); stored bytes per target token:
    k=8 15.9, k=20 38.0, k=64 115.9 (46,520 target tokens)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.core.datasets import DatasetSpec, load_split, problem_text, training_text  # noqa: E402
from study.core.spec import KdMethod, TinyArch  # noqa: E402
from study.core.storage import StudyPaths  # noqa: E402
from study.teachers.program import render  # noqa: E402
from trainables.data import batch_indices, encode_corpus  # noqa: E402
from trainables.kd import DistillationLoss, compute_top_k, write_teacher_logits  # noqa: E402
from trainables.packing import PackingPlan, step_micro_batches  # noqa: E402
from trainables.step import TargetLoss, train_step  # noqa: E402
from trainables.students import tiny_config  # noqa: E402
from trainables.tokenizer import train_tokenizer  # noqa: E402
from transformers import LlamaForCausalLM  # noqa: E402


def corpus(n_train: int):
    problems = load_split(DatasetSpec(name="arith", arith={"n_train": n_train, "n_test": 10}), "train")
    rows = pd.DataFrame({"question": [problem_text(p) for p in problems],
                         "rationale": [render(p, 3, "cot") for p in problems]})
    tokenizer = train_tokenizer([training_text("arith", q, r) for q, r in zip(rows["question"], rows["rationale"])], 1024)
    return tokenizer, encode_corpus(tokenizer, "arith", rows, 384).examples


def model(arch: TinyArch, tokenizer, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(arch, tokenizer, 384))


def trainer(loss_module: torch.nn.Module):
    optimizer = torch.optim.AdamW(loss_module.parameters(), lr=1e-3)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds (one step of each method per round)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=1200)
    parser.add_argument("--tokens-per-batch", type=int, default=2048)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--teacher-layers", type=int, default=4)
    parser.add_argument("--teacher-width", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer, examples = corpus(args.n_train)
    teacher = model(TinyArch(layers=args.teacher_layers, width=args.teacher_width, heads=4), tokenizer, 1)
    teacher.requires_grad_(False).eval()
    started = time.perf_counter()
    stored = {k: compute_top_k(teacher, examples, k, tokenizer.pad_token_id, torch.device("cpu")) for k in (8, 20, 64)}
    topk_s = (time.perf_counter() - started) / 3
    student_arch = TinyArch(layers=2, width=64, heads=2)
    settings = KdMethod(teacher_model="bench", alpha=0.5, top_k=args.top_k)
    methods = {
        "sft": TargetLoss(model(student_arch, tokenizer, 0)),
        "kd offline": DistillationLoss(model(student_arch, tokenizer, 0), settings, None),
        "kd online": DistillationLoss(model(student_arch, tokenizer, 0), settings.model_copy(update={"mode": "online"}), teacher),
    }
    optimizers = {name: trainer(module) for name, module in methods.items()}
    with_topk = [replace(e, teacher=t) for e, t in zip(examples, stored[args.top_k])]
    batches = batch_indices(examples, args.tokens_per_batch, seed=0, packed=True)
    plan = PackingPlan(packing=True)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for round_ in range(args.warmup + args.rounds):
        chosen = batches[round_ % len(batches)]
        for name, module in methods.items():
            source = examples if name == "sft" else with_topk
            micro = step_micro_batches([source[i] for i in chosen], plan, tokenizer.pad_token_id, None)
            tick = time.perf_counter()
            train_step(module, *optimizers[name], micro, world=1)
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - tick)
    sft = statistics.median(times["sft"])
    print(f"{len(examples)} examples, {args.rounds} timed rounds of {args.tokens_per_batch} tokens; student "
          f"{sum(p.numel() for p in methods['sft'].parameters()):,} params, teacher {sum(p.numel() for p in teacher.parameters()):,}")
    print(f"{'method':<12} {'median step s':>14} {'ratio to sft':>13}")
    for name, values in times.items():
        print(f"{name:<12} {statistics.median(values):>14.4f} {statistics.median(values) / sft:>12.2f}x")
    print(f"offline top-k of the corpus: {topk_s:.1f} s once per (teacher, corpus, k)")
    sizes = {}
    with tempfile.TemporaryDirectory() as scratch:
        for k, topk in stored.items():
            write_teacher_logits(StudyPaths(scratch), f"k{k}", topk, {})
            card = json.loads(Path(StudyPaths(scratch).teacher_logits_card(f"k{k}")).read_text())
            sizes[k] = card["bytes_per_target_token"]
            print(f"stored top-{k}: {card['bytes']:,} bytes for {card['targets']:,} target tokens = "
                  f"{sizes[k]:.1f} bytes per target token (raw {k * 4:d} bytes)")
    print(json.dumps({"step_s": {n: statistics.median(v) for n, v in times.items()},
                      "ratio": {n: statistics.median(v) / sft for n, v in times.items()},
                      "bytes_per_target_token": sizes, "topk_compute_s": topk_s}))


if __name__ == "__main__":
    main()
