"""White-box distillation (`method: kd`, trainables/kd.py) on real tiny models: the loss against
SFT's and against hand-computed divergences, the stored teacher log-probs (computed once, read by
every student), and two FSDP2 processes against one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_spec
from processes import rank_zero_result
from transformers import LlamaConfig, LlamaForCausalLM

from study.core.cells import expand_grid
from study.core.corpora import label_corpus, load_corpus, rendered_corpus, save_corpus, training_rows
from study.core.datasets import load_split
from study.core.spec import KdMethod, StudySpec, TinyArch, parse_spec
from study.core.storage import StudyPaths
from study.run.studies import prepare_storage
from study.teachers.program import render
from trainables.data import IGNORE_INDEX, Example, TeacherTopK
from trainables.kd import (
    DistillationLoss,
    divergence,
    ensure_teacher_logits,
    logits_id,
    on_support,
    read_teacher_logits,
    top_k,
)
from trainables.methods import MethodContext, training_method
from trainables.packing import PackingPlan, step_micro_batches
from trainables.step import TargetLoss, target_logits
from trainables.students import tiny_config
from trainables.tokenizer import ensure_study_tokenizer, load_tokenizer

VOCAB = 64
CONFIG = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=2)


def _model(seed: int, config: LlamaConfig = CONFIG) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def _examples(seed: int, n: int = 6) -> list[Example]:
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        document = torch.randint(2, VOCAB, (int(torch.randint(8, 20, (1,), generator=generator)),), generator=generator)
        examples.append(Example(document.tolist(), [IGNORE_INDEX] * 3 + document[3:].tolist()))
    return examples


def _with_teacher(examples: list[Example], teacher: LlamaForCausalLM, k: int) -> list[Example]:
    """The examples with the teacher's top-k at each target token, computed one example at a time."""
    from trainables.packing import collate_padded

    attached = []
    for example in examples:
        with torch.no_grad():
            ids, logprobs = top_k(target_logits(teacher, collate_padded([example], 0)), k)
        attached.append(Example(example.input_ids, example.labels,
                                TeacherTopK(ids.numpy().astype(np.int32), logprobs.numpy().astype(np.float16))))
    return attached


def _packed(examples: list[Example]) -> dict:
    (batch,) = step_micro_batches(examples, PackingPlan(packing=True, pack_length=48), 0, None)
    return batch


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_alpha_zero_gives_exactly_the_sft_loss_and_gradients(mode):
    teacher = _model(1).requires_grad_(False).eval()
    examples = _examples(0)
    if mode == "offline":
        examples = _with_teacher(examples, teacher, k=5)
    batch = _packed(examples)
    settings = KdMethod(teacher_model="t", alpha=0.0, loss="jsd", top_k=5, mode=mode)
    sft_student, kd_student = _model(0), _model(0)
    sft_loss = TargetLoss(sft_student)(batch)
    kd_loss = DistillationLoss(kd_student, settings, teacher if mode == "online" else None)(batch)
    sft_loss.backward()
    kd_loss.backward()
    assert kd_loss.item() == sft_loss.item()
    for (name, plain), (_, distilled) in zip(sft_student.named_parameters(), kd_student.named_parameters()):
        assert torch.equal(plain.grad, distilled.grad), name


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


TEACHER_P = [0.5, 0.3, 0.15, 0.05]
STUDENT_LOGITS = [0.2, 1.0, -0.5, 0.3]


@pytest.mark.parametrize("loss, beta, temperature", [("forward_kl", 0.5, 1.0), ("reverse_kl", 0.5, 1.0),
                                                     ("jsd", 0.3, 1.0), ("forward_kl", 0.5, 2.0)])
@pytest.mark.parametrize("k", [None, 2])
def test_the_kd_term_is_the_hand_computed_divergence(loss, beta, temperature, k):
    """On 4 tokens: the whole distributions, or the teacher's top 2 with both renormalised over
    them (the tail beyond the top k dropped)."""
    support = [0, 1] if k == 2 else [0, 1, 2, 3]
    p = _softmax([math.log(TEACHER_P[i]) for i in support], temperature)
    q = _softmax([STUDENT_LOGITS[i] for i in support], temperature)
    if loss == "forward_kl":
        expected = _kl(p, q)
    elif loss == "reverse_kl":
        expected = _kl(q, p)
    else:
        m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
        expected = beta * _kl(p, m) + (1 - beta) * _kl(q, m)
    settings = KdMethod(teacher_model="t", loss=loss, beta=beta, temperature=temperature, top_k=k, mode="online")
    ids, teacher = top_k(torch.tensor([TEACHER_P]).log(), k)
    student, teacher = on_support(torch.tensor([STUDENT_LOGITS]), ids, teacher)
    assert divergence(student, teacher, settings).item() == pytest.approx(expected, rel=1e-5)


def test_offline_and_online_give_the_same_loss_and_alpha_weighs_the_two_terms():
    teacher = _model(1).requires_grad_(False).eval()
    examples = _examples(0)
    batch = _packed(_with_teacher(examples, teacher, k=8))
    student = _model(0)
    settings = dict(teacher_model="t", alpha=0.7, loss="forward_kl", top_k=8)
    offline = DistillationLoss(student, KdMethod(**settings, mode="offline"), None)(batch).item()
    online = DistillationLoss(student, KdMethod(**settings, mode="online"), teacher)(batch).item()
    assert offline == pytest.approx(online, rel=2e-3)  # stored log-probs are float16
    cross_entropy = TargetLoss(student)(batch).item()
    pure = DistillationLoss(student, KdMethod(**{**settings, "alpha": 1.0}, mode="online"), teacher)(batch).item()
    assert online == pytest.approx(0.3 * cross_entropy + 0.7 * pure, rel=1e-5)


# --- stored teacher log-probs ----------------------------------------------------------------------

def _prepared_study(root: Path, teacher_model: str, **overrides: object) -> tuple[StudySpec, StudyPaths]:
    """A kd study's corpora (the program teacher rendered in process: no Serve) and tokenizer."""
    spec = parse_spec(small_spec(root, name="kd", granularities=[3], formats=["cot", "answer_only"],
                                 method={"kind": "kd", "teacher_model": teacher_model, "top_k": 8}, **overrides))
    paths, _ = prepare_storage(spec)
    keys = list(dict.fromkeys(c.corpus for c in expand_grid(spec)))
    for key in keys:
        problems = load_split(key.dataset, "train")
        corpus = (label_corpus(key, problems) if key.teacher is None else
                  rendered_corpus(key, problems, lambda problem: render(problem, key.granularity, key.format)))
        save_corpus(paths, key, corpus)
    ensure_study_tokenizer(paths, keys, spec.tokenizer.vocab_size)
    return spec, paths


def test_stored_teacher_logits_are_computed_once_and_read_by_every_student(tmp_path):
    """Two students of the same tokenizer on two corpora: one teacher pass over each corpus, one
    file per corpus, and each student's examples carry the teacher's top-k at every target token."""
    tokenizer_root = tmp_path / "tokenizer-study"
    _, first = _prepared_study(tokenizer_root, "unused")
    tokenizer = load_tokenizer(Path(first.tokenizer))
    folder = tmp_path / "teacher"
    teacher = LlamaForCausalLM(tiny_config(TinyArch(layers=1, width=32, heads=2), tokenizer, 256))
    teacher.save_pretrained(folder)
    students = [{"name": "a", "tiny": {"layers": 1, "width": 32, "heads": 2}},
                {"name": "b", "tiny": {"layers": 2, "width": 32, "heads": 2}}]
    spec, paths = _prepared_study(tmp_path / "out", str(folder), students=students)
    cells = expand_grid(spec)
    assert len(cells) == 4
    passes = ensure_teacher_logits(cells, paths)
    assert passes == 2, "one batch per corpus (80 short examples fit one forward pass), whichever student"
    assert ensure_teacher_logits(cells, paths) == 0, "already stored: no teacher pass"
    assert len(list((Path(paths.root) / "teacher_logits").glob("*.npz"))) == 2
    tokenizer = load_tokenizer(Path(paths.tokenizer))
    for cell in cells:
        context = MethodContext(cell, paths, tokenizer, torch.device("cpu"))
        method = training_method(cell.method, context)
        rows = training_rows(cell.corpus, load_corpus(paths, cell.corpus))
        examples = method.examples("student", tokenizer, cell.corpus, rows, cell.train).examples
        assert all(e.teacher.ids.shape == (e.n_targets, 8) for e in examples)
        assert logits_id(cell, examples) in {p.stem for p in (Path(paths.root) / "teacher_logits").glob("*.npz")}
    stored = read_teacher_logits(paths, logits_id(cells[0], examples))
    assert len(stored) == len(examples)


# --- bad input ---------------------------------------------------------------------------------------

def _fails_with_nothing_written(tmp_path: Path, capsys, raw: dict, *expected: str) -> None:
    from conftest import write_spec

    from study.run.cli import main

    assert main(["run", str(write_spec(tmp_path / "spec.yaml", raw))]) == 2
    error = capsys.readouterr().err
    assert error.count("error: ") == 1, error
    for text in expected:
        assert text in error, error
    assert not (tmp_path / "out").exists(), "bad input must write nothing to storage"


def test_a_teacher_of_another_vocabulary_is_refused_naming_both(tmp_path, capsys):
    from trainables.tokenizer import train_tokenizer

    folder = tmp_path / "teacher"
    tokenizer = train_tokenizer(["a teacher's own words, 1 2 3"] * 4, 300)
    LlamaForCausalLM(tiny_config(TinyArch(layers=1, width=32, heads=2), tokenizer, 64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    raw = small_spec(tmp_path / "out", formats=["answer_only"], method={"kind": "kd", "teacher_model": str(folder)})
    _fails_with_nothing_written(tmp_path, capsys, raw, f"teacher '{folder}' (a vocabulary of {len(tokenizer)} tokens)",
                                "student 's' (the study tokenizer)", "do not share a vocabulary")


def test_a_cell_teacher_that_names_no_cell_is_refused(tmp_path, capsys):
    raw = small_spec(tmp_path / "out", formats=["answer_only"],
                     methods=["sft", {"kind": "kd", "teacher_model": "cell:arith.answer_only.big.sft.s0"}])
    _fails_with_nothing_written(tmp_path, capsys, raw, "methods.kd.teacher_model: 'cell:arith.answer_only.big.sft.s0' "
                                "names no cell of another method", "['arith.answer_only.s.sft.s0']")


# --- two FSDP2 processes ---------------------------------------------------------------------------

def _kd_losses(rank: int, world: int, port: int, results) -> None:
    """Four steps of kd (offline, then online) on a tiny LLaMA, each step's 8 examples split over
    `world` processes sharded by FSDP2; rank 0 puts both runs' losses per step, and the share of
    the online teacher's weights that it holds."""
    import os

    from trainables.parallel import distribute
    from trainables.step import train_step

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    teacher = _model(1).requires_grad_(False).eval()
    steps = [_with_teacher(_examples(10 + step, n=8), teacher, k=8) for step in range(4)]  # before it is sharded
    losses = {}
    for mode in ("offline", "online"):
        student = _model(0)
        loss_module = DistillationLoss(student, KdMethod(teacher_model="t", alpha=0.5, loss="jsd", top_k=8, mode=mode),
                                       teacher if mode == "online" else None)
        wrapped = distribute(loss_module, student, world, "fsdp", torch.device("cpu"))
        if mode == "online":
            losses["teacher_held"] = _held_share(teacher)
        optimizer = torch.optim.AdamW(loss_module.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        losses[mode] = []
        for examples in steps:
            share = examples[rank * 8 // world:(rank + 1) * 8 // world]
            plan = PackingPlan(packing=True, pack_length=48)
            losses[mode].append(train_step(wrapped, optimizer, scheduler, step_micro_batches(share, plan, 0, 24), world))
    if rank == 0:
        results.put(losses)
    if world > 1:
        torch.distributed.destroy_process_group()


def _held_share(model: torch.nn.Module) -> float:
    """The share of `model`'s weights this process holds (a DTensor's local shard under FSDP2)."""
    held = sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())
    return held / sum(p.numel() for p in model.parameters())


def test_kd_under_two_fsdp2_processes_gives_the_losses_of_one():
    """Packed, in micro-batches of 24 tokens, split over two FSDP2 ranks: the per-token loss of
    every step is the single process's (the teacher rows follow their tokens through collation)."""
    import queue

    _kd_losses(0, 1, 0, local := queue.Queue())
    one = local.get()
    two = rank_zero_result(_kd_losses, world=2, timeout=60)
    for mode in ("offline", "online"):
        assert two[mode] == pytest.approx(one[mode], rel=1e-5), mode
    assert one["teacher_held"] == 1 and two["teacher_held"] == pytest.approx(0.5, abs=0.05)  # the teacher sharded too
    assert one["offline"] == pytest.approx(one["online"], rel=2e-3)
