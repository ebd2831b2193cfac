"""The `hf` teacher: a transformers causal LM on Ray Serve behind an OpenAI-compatible route.

(No `from __future__ import annotations` here: FastAPI must see the request model types.)

For small runs without vLLM. `POST /v1/chat/completions` and `GET /v1/models`, answering to the
teacher's name. Requests that arrive together are generated together (`@serve.batch`, up to the
spec's `batch_size`, left padding); a batch is split into groups that sample alike (temperature,
top_p, seed), each group one `model.generate` call up to its longest `max_tokens`, each reply then
cut to its own. Greedy replies do not depend on the batch; a sampled reply is fixed by its seed
for the same batch composition only (all rows of a group share one random stream).
"""

import asyncio
import uuid
from dataclasses import dataclass

import torch
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from study.core.spec import HfTeacher
from study.teachers.endpoint import (
    ChatCompletionRequest,
    ChatMessage,
    ServeTarget,
    TeacherEndpoint,
    chat_completion,
    deploy_app,
    openai_error,
)

READY_TIMEOUT_S = 120.0
# How long a batch waits to fill. Corpus generation wants throughput, not latency: measured with
# bench/generation.py (tiny model, 32 requests in flight, batch 16, busy 2-core machine), 20 ms
# let requests trickle in and most batches ran 1-5 rows (11.5 rows/s); 200 ms filled every batch
# (32.6 rows/s).
BATCH_WAIT_S = 0.2


@dataclass(frozen=True)
class GenerationJob:
    """One request, tokenized and with its sampling settings resolved."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None

    def sampling_key(self) -> tuple:
        # Greedy rows batch with any other greedy row: their seed plays no part.
        return (0.0, 1.0, None) if self.temperature == 0 else (self.temperature, self.top_p, self.seed)


@dataclass(frozen=True)
class GenerationOutput:
    token_ids: list[int]
    finish_reason: str  # "stop" (end of sequence) or "length" (max_tokens reached)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, messages: list[ChatMessage]) -> str:
    """The model's own chat template when it has one, else the contents joined by blank lines."""
    if tokenizer.chat_template is not None:
        return tokenizer.apply_chat_template([m.model_dump() for m in messages], tokenize=False,
                                             add_generation_prompt=True)
    return "\n\n".join(m.content for m in messages) + "\n"


hf_api = FastAPI(title="cotstudy hf teacher")


@serve.deployment
@serve.ingress(hf_api)
class HfTeacherServer:
    def __init__(self, teacher: HfTeacher) -> None:
        self.teacher = teacher
        self.device = "cuda" if teacher.gpus_per_replica > 0 else "cpu"
        torch.set_num_threads(max(1, int(teacher.cpus_per_replica)))
        self.tokenizer = AutoTokenizer.from_pretrained(teacher.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(teacher.model, dtype="auto").to(self.device).eval()
        self.context_tokens = self.model.config.max_position_embeddings
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = set(eos) if isinstance(eos, list) else {eos if eos is not None else self.tokenizer.eos_token_id}
        self.generate_batch.set_max_batch_size(teacher.batch_size)

    @hf_api.get("/v1/models")
    def models(self) -> dict:
        return {"object": "list", "data": [
            {"id": self.teacher.name, "object": "model", "owned_by": "cotstudy", "root": self.teacher.model}]}

    @hf_api.post("/v1/chat/completions")
    async def chat_completions(self, request: ChatCompletionRequest) -> JSONResponse:
        if request.model != self.teacher.name:
            return openai_error(404, f"The model '{request.model}' does not exist; this server has "
                                     f"'{self.teacher.name}'", code="model_not_found")
        job = self._job(request)
        if len(job.prompt_ids) + job.max_tokens > self.context_tokens:
            return openai_error(400, f"prompt ({len(job.prompt_ids)} tokens) + max_tokens ({job.max_tokens}) "
                                     f"exceeds the model's context of {self.context_tokens} tokens")
        output = await self.generate_batch(job)
        text = self.tokenizer.decode(output.token_ids, skip_special_tokens=True)
        return chat_completion(uuid.uuid4().hex, self.teacher.name, text, output.finish_reason, len(job.prompt_ids),
                               len(output.token_ids))

    def _job(self, request: ChatCompletionRequest) -> GenerationJob:
        defaults = self.teacher.generation
        prompt = chat_prompt(self.tokenizer, request.messages)
        return GenerationJob(
            # The template already wrote any special tokens the model expects.
            prompt_ids=self.tokenizer(prompt, add_special_tokens=False)["input_ids"],
            max_tokens=request.max_tokens if request.max_tokens is not None else defaults.max_tokens,
            temperature=request.temperature if request.temperature is not None else defaults.temperature,
            top_p=request.top_p if request.top_p is not None else defaults.top_p,
            seed=request.seed if request.seed is not None else defaults.seed,
        )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=BATCH_WAIT_S)  # max_batch_size: the spec's, set in __init__
    async def generate_batch(self, jobs: list[GenerationJob]) -> list[GenerationOutput]:
        # In a thread, so the replica keeps accepting requests (the next batch) while this one runs.
        return await asyncio.to_thread(self._generate_all, jobs)

    def _generate_all(self, jobs: list[GenerationJob]) -> list[GenerationOutput]:
        outputs: dict[int, GenerationOutput] = {}
        groups: dict[tuple, list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault(job.sampling_key(), []).append(index)
        for indices in groups.values():
            for index, output in zip(indices, self._generate_group([jobs[i] for i in indices])):
                outputs[index] = output
        return [outputs[i] for i in range(len(jobs))]

    @torch.inference_mode()
    def _generate_group(self, jobs: list[GenerationJob]) -> list[GenerationOutput]:
        """Jobs that sample alike, as one left-padded `generate` call."""
        first = jobs[0]
        batch = self.tokenizer.pad({"input_ids": [j.prompt_ids for j in jobs]}, return_tensors="pt").to(self.device)
        sampling = {"do_sample": False} if first.temperature == 0 else \
            {"do_sample": True, "temperature": first.temperature, "top_p": first.top_p, "top_k": 0}
        if first.temperature > 0 and first.seed is not None:
            torch.manual_seed(first.seed)
        generated = self.model.generate(**batch, max_new_tokens=max(j.max_tokens for j in jobs),
                                        pad_token_id=self.tokenizer.pad_token_id, **sampling)
        new_tokens = generated[:, batch["input_ids"].shape[1]:].tolist()
        return [self._cut(tokens[:job.max_tokens]) for tokens, job in zip(new_tokens, jobs)]

    def _cut(self, tokens: list[int]) -> GenerationOutput:
        """The reply's tokens up to and including its first end-of-sequence token."""
        for position, token in enumerate(tokens):
            if token in self.stop_ids:
                return GenerationOutput(tokens[:position + 1], "stop")
        return GenerationOutput(tokens, "length")


def deploy_hf_teacher(teacher: HfTeacher, target: ServeTarget) -> TeacherEndpoint:
    """Deploy a transformers teacher on the running Serve (see `start_serve`) and wait until it answers."""
    server = HfTeacherServer.options(
        num_replicas=teacher.replicas,
        ray_actor_options={"num_cpus": teacher.cpus_per_replica, "num_gpus": teacher.gpus_per_replica},
        # Enough queued requests per replica to fill the next batch while one generates.
        max_ongoing_requests=2 * teacher.batch_size,
    )
    return deploy_app(server.bind(teacher), teacher.name, target, teacher.name, READY_TIMEOUT_S)
