import pandas as pd
import pytest
import torch

from study.core.datasets import load_split, question_prompt, training_text
from study.core.spec import DatasetSpec, StudentSpec, TinyArch
from study.core.program_render import render
from trainables.data import IGNORE_INDEX, batch_indices, collate, encode_corpus, encode_example
from trainables.students import build_student
from trainables.tokenizer import train_tokenizer

PROBLEMS = load_split(DatasetSpec(name="arith"), "train")[:200]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [training_text("arith", p.question, render(p, 3, "cot")) for p in PROBLEMS]
    return train_tokenizer(texts, vocab_size=1024)


def test_whole_numbers_are_single_tokens_and_text_round_trips(tokenizer):
    for number in range(0, 41):
        assert len(tokenizer(f" {number}", add_special_tokens=False)["input_ids"]) == 1, number
    text = render(PROBLEMS[3], 6, "cot")
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_prompt_tokens_are_masked_from_the_loss(tokenizer):
    prompt = question_prompt("arith", PROBLEMS[0].question)
    example = encode_example(tokenizer, prompt, "The answer is 7.")
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert example.labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
    assert example.labels[n_prompt:] == example.input_ids[n_prompt:]
    assert example.input_ids[-1] == tokenizer.eos_token_id


def test_batches_fit_the_token_budget_and_cover_the_epoch(tokenizer):
    corpus = pd.DataFrame({"question": [p.question for p in PROBLEMS], "rationale": [render(p, 6, "cot") for p in PROBLEMS]})
    encoded = encode_corpus(tokenizer, "arith", corpus, max_length=512)
    examples = encoded.examples
    assert encoded.dropped == encoded.truncated == 0
    batches = batch_indices(examples, tokens_per_batch=1024, seed=0)
    assert sorted(i for batch in batches for i in batch) == list(range(len(examples)))
    for batch in batches:
        assert len(batch) * max(len(examples[i].input_ids) for i in batch) <= 1024 or len(batch) == 1
    padded = collate([examples[i] for i in batches[0]], tokenizer.pad_token_id)
    assert (padded["labels"][padded["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_too_long_rows_are_dropped_and_all_too_long_is_an_error(tokenizer):
    corpus = pd.DataFrame({"question": [p.question for p in PROBLEMS[:5]], "rationale": [render(p, 6, "cot") for p in PROBLEMS[:5]]})
    with pytest.raises(ValueError, match="max_length=10"):
        encode_corpus(tokenizer, "arith", corpus, max_length=10)
    full = encode_corpus(tokenizer, "arith", corpus, max_length=512).examples
    limit = sorted(len(e.input_ids) for e in full)[2]  # the two longest rows are over it
    dropped = encode_corpus(tokenizer, "arith", corpus, max_length=limit)
    assert (len(dropped.examples), dropped.dropped, dropped.truncated) == (3, 2, 0)
    assert all(len(e.input_ids) <= limit for e in dropped.examples)


def test_truncate_keeps_the_prompt_and_the_start_of_the_rationale_and_counts_it(tokenizer):
    corpus = pd.DataFrame({"question": [p.question for p in PROBLEMS[:5]], "rationale": [render(p, 6, "cot") for p in PROBLEMS[:5]]})
    full = encode_corpus(tokenizer, "arith", corpus, max_length=512).examples
    limit = sorted(len(e.input_ids) for e in full)[2]
    cut = encode_corpus(tokenizer, "arith", corpus, max_length=limit, overlong="truncate")
    assert (len(cut.examples), cut.dropped, cut.truncated) == (5, 0, 2)
    long_ones = [e for e in full if len(e.input_ids) > limit]
    for original, truncated in zip(long_ones, cut.examples[3:]):
        assert truncated.input_ids == original.input_ids[:limit] and truncated.labels == original.labels[:limit]
        assert truncated.input_ids[-1] != tokenizer.eos_token_id  # cut, so no end of sequence to learn


def test_a_tiny_student_learns_from_a_few_steps(tokenizer):
    student = build_student(StudentSpec(name="t", tiny=TinyArch(layers=2, width=32, heads=2)), tokenizer, 256, seed=0)
    corpus = pd.DataFrame({"question": [p.question for p in PROBLEMS[:32]], "rationale": [render(p, 3, "cot") for p in PROBLEMS[:32]]})
    examples = encode_corpus(tokenizer, "arith", corpus, max_length=256).examples
    batch = collate(examples, tokenizer.pad_token_id)
    before = [p.detach().clone() for p in student.parameters()]
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = student(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8
    assert all(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_text_unseen_in_training_still_round_trips(tokenizer):
    text = "Zoë wrote: Quartz & jam — 12 + 7 = 19!"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_a_fixed_batch_is_split_over_the_workers_and_each_epoch_covers_the_corpus_once(tokenizer, tmp_path):
    """examples_per_batch is per optimizer step: 64 on 3 workers is 22 + 21 + 21, not 3 x 22."""
    from conftest import small_spec

    from study.core.cells import expand_grid
    from study.core.corpora import label_corpus, save_corpus
    from study.core.datasets import load_split
    from study.core.spec import parse_spec
    from study.core.storage import StudyPaths
    from trainables.methods import training_method
    from trainables.train import training_data

    spec = parse_spec(small_spec(tmp_path, formats=["answer_only"],
                                 datasets=[{"name": "arith", "arith": {"n_train": 200, "n_test": 16}}],
                                 training={"examples_per_batch": 64, "max_steps": 8, "max_length": 256}))
    (cell,) = expand_grid(spec)
    paths = StudyPaths(str(tmp_path / "study"))
    save_corpus(paths, cell.corpus, label_corpus(cell.corpus, load_split(cell.corpus.dataset, "train")))
    data = training_data(cell, paths, tokenizer, world=3, method=training_method(cell.method), role="student")
    assert len(data.examples) == 200 and data.per_epoch == 4  # 3 steps of 64, then the 8 left over
    steps = [data.stream[step * 3:(step + 1) * 3] for step in range(data.n_steps)]
    assert [[len(share) for share in step] for step in steps[:4]] == [[22, 21, 21]] * 3 + [[3, 3, 2]]
    for epoch in (steps[:4], steps[4:]):
        assert sorted(i for step in epoch for share in step for i in share) == list(range(200))
