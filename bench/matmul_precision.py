"""Training with bf16 matmul products on a CPU (`training.matmul_precision: medium`) against fp32
(`highest`): does the loss curve stay within the noise of fp32, and how much faster is a step?

For each seed (the student's initial weights and the batch order), our step loop trains the same
tiny student twice on the same batches, once at each precision (A B, seed after seed, so machine
load hits both alike). The loss curve is compared in windows of steps (mean loss per window):
- at equal seed, |medium - highest| per window: what the precision changes;
- across seeds at highest, max - min per window: the noise a seed already makes.
The curve is within noise when, in every window, the largest |medium - highest| is below the seed
spread. Speed: the median over seeds of medium's tokens/s over highest's, same seed.

Corpus, tokenizer, student and step as bench/train_throughput.py's CPU run (the paper's released
SVAMP CoT, a BPE tokenizer trained on it, a 2-layer width-64 LLaMA, length-grouped rows, 4096
tokens a step, one torch thread), with the study's default peak learning rate (1e-3, constant).
Needs a CPU with AMX or AVX-512 BF16 for medium to differ from highest (lscpu: amx_bf16):
    python bench/matmul_precision.py            (3 seeds x 2 precisions x 300 steps)
    python bench/matmul_precision.py --seeds 5 --steps 500 --compile

It prints a table of the windows, the verdict and the speed ratio, then one JSON line with every
curve; the LAST line is `within_noise yes|no speed X.XX`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train_throughput import TINY, build_model, encode, load_corpus  # noqa: E402

from study.core.datasets import training_text  # noqa: E402
from trainables.data import batch_indices  # noqa: E402
from trainables.packing import PackingPlan, step_micro_batches  # noqa: E402
from trainables.parallel import prepare_layers  # noqa: E402
from trainables.step import TargetLoss, train_step  # noqa: E402
from trainables.tokenizer import train_tokenizer  # noqa: E402

PRECISIONS = ("highest", "medium")


def curve(examples, pad_id: int, tokenizer, seed: int, precision: str, args: argparse.Namespace) -> tuple[list[float], float]:
    """Per-step losses of one training run, and its tokens/s (all steps but the first, which may compile)."""
    model = build_model(TINY, tokenizer, "cpu", seed=seed)
    prepare_layers(model, activation_checkpointing=False, compile_layers=args.compile)
    loss_module = TargetLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    steps = [s for epoch in range(100) for s in batch_indices(examples, args.tokens_per_step, seed=seed * 1000 + epoch,
                                                                packed=True)][:args.steps]
    plan, losses, tokens = PackingPlan(packing=True), [], 0
    for number, indices in enumerate(steps):
        if number == 1:
            started = time.perf_counter()
        chosen = [examples[i] for i in indices]
        micro_batches = step_micro_batches(chosen, plan, pad_id, None)
        losses.append(train_step(loss_module, optimizer, scheduler, micro_batches, world=1, matmul_precision=precision))
        tokens += sum(len(e.input_ids) for e in chosen) if number >= 1 else 0
    return losses, tokens / (time.perf_counter() - started)


def windows(losses: list[float], size: int) -> list[float]:
    return [statistics.fmean(losses[i:i + size]) for i in range(0, len(losses) - size + 1, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/svamp/cot")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--window", type=int, default=25, help="steps per window of the loss curve")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tokens-per-step", type=int, default=4096)
    parser.add_argument("--examples", type=int, default=1500)
    parser.add_argument("--compile", action="store_true", help="torch.compile each decoder layer (both precisions)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()[0]
    rows = load_corpus(args.data, args.examples, seed=0)
    tokenizer = train_tokenizer([training_text("svamp", q, r) for q, r in rows], 1024)
    examples = encode(rows, tokenizer, 512)
    runs = {}
    for seed in range(args.seeds):
        for precision in PRECISIONS:
            losses, speed = curve(examples, tokenizer.pad_token_id, tokenizer, seed, precision, args)
            runs[(seed, precision)] = (windows(losses, args.window), speed, losses)
            print(f"seed {seed} {precision:8} final window {runs[(seed, precision)][0][-1]:.4f}  {speed:,.0f} tokens/s",
                  flush=True)
    report(runs, args, (load_start, os.getloadavg()[0]))


def report(runs: dict, args: argparse.Namespace, load: tuple[float, float]) -> None:
    seeds = range(args.seeds)
    n_windows = len(runs[(0, "highest")][0])
    print(f"\n{'steps':>11} {'highest (mean over seeds)':>26} {'max |medium - highest|':>23} {'seed spread':>12}")
    within = True
    for w in range(n_windows):
        highest = [runs[(s, "highest")][0][w] for s in seeds]
        change = max(abs(runs[(s, "medium")][0][w] - runs[(s, "highest")][0][w]) for s in seeds)
        spread = max(highest) - min(highest)
        within &= change < spread
        steps = f"{w * args.window + 1}-{(w + 1) * args.window}"
        print(f"{steps:>11} {statistics.fmean(highest):>26.4f} {change:>23.4f} {spread:>12.4f}")
    speeds = [runs[(s, "medium")][1] / runs[(s, "highest")][1] for s in seeds]
    print(f"medium / highest tokens/s per seed: {', '.join(f'{r:.2f}x' for r in speeds)}; "
          f"median {statistics.median(speeds):.2f}x")
    print(f"machine: {os.cpu_count()} CPUs; 1-minute load average {load[0]:.2f} at start, {load[1]:.2f} at end")
    print(json.dumps({"seeds": args.seeds, "steps": args.steps, "window": args.window, "lr": args.lr,
                      "compile": args.compile, "within_noise": within, "speed_ratios": speeds,
                      "runs": [{"seed": s, "precision": p, "tokens_per_s": runs[(s, p)][1], "losses": runs[(s, p)][2]}
                               for s in seeds for p in PRECISIONS]}), flush=True)
    print(f"within_noise {'yes' if within else 'no'} speed {statistics.median(speeds):.2f}", flush=True)


if __name__ == "__main__":
    main()
