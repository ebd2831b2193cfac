"""Packing: a packed batch trains exactly like its samples run one by one, rows are packed tightly,
and a tiny model learns from packed steps."""

import itertools
import random

import pytest
import torch
import torch.nn.functional as F
from transformers import BloomConfig, BloomForCausalLM, LlamaConfig, LlamaForCausalLM

from trainables.data import IGNORE_INDEX, Example, batch_indices
from trainables.packing import (
    PackingPlan,
    collate_packed,
    collate_padded,
    flatten_for_varlen,
    keeps_documents_apart,
    pack_rows,
    length_groups,
    plan_packing,
    step_micro_batches,
    use_varlen_attention,
)
from trainables.step import TargetLoss, target_count, train_step

VOCAB, PAD = 96, 0


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=PAD, attn_implementation="sdpa")
    return LlamaForCausalLM(config)


def random_examples(n: int, seed: int, shortest: int = 6, longest: int = 40) -> list[Example]:
    """Token ids 1..VOCAB-1 (never the pad id); the first third of each is a masked prompt."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        ids = [rng.randrange(1, VOCAB) for _ in range(rng.randint(shortest, longest))]
        n_prompt = max(1, len(ids) // 3)
        examples.append(Example(ids, [IGNORE_INDEX] * n_prompt + ids[n_prompt:]))
    return examples


def gradients(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def test_a_packed_document_sees_exactly_what_it_sees_alone():
    model = tiny_model().eval()
    examples = random_examples(7, seed=1)
    batch = collate_packed(examples, row_length=64, pad_id=PAD)
    assert batch["input_ids"].shape[0] < len(examples), "several documents share a row"
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        ones = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                     attention_mask=torch.ones_like(batch["input_ids"])).logits
    crossed = False
    for example in examples:
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([example.input_ids]), use_cache=False).logits[0]
        row, start = _find(batch["input_ids"], example.input_ids)
        torch.testing.assert_close(packed[row, start : start + len(alone)], alone, atol=1e-5, rtol=1e-4)
        crossed |= start > 0 and not torch.allclose(ones[row, start : start + len(alone)], alone, atol=1e-3)
    assert crossed, "an all-ones attention mask lets documents see each other (why none is passed)"


def _find(rows: torch.Tensor, ids: list[int]) -> tuple[int, int]:
    target = torch.tensor(ids)
    for row in range(rows.shape[0]):
        for start in range(rows.shape[1] - len(ids) + 1):
            if torch.equal(rows[row, start : start + len(ids)], target):
                return row, start
    raise AssertionError("document not found in the packed rows")


@pytest.mark.parametrize("row_length", [48, 128])
def test_packed_loss_and_gradients_equal_one_by_one(row_length):
    examples = random_examples(12, seed=2)
    model = tiny_model()
    batch = collate_packed(examples, row_length, PAD)
    total_targets = target_count(batch)
    assert total_targets == sum(sum(1 for label in e.labels if label != IGNORE_INDEX) for e in examples)
    packed_loss = TargetLoss(model)(batch) / total_targets
    packed_loss.backward()
    packed_grads = gradients(model)
    model.zero_grad()

    alone_loss = torch.zeros(())
    for example in examples:  # each sample's loss summed over its tokens, averaged over all tokens
        loss = TargetLoss(model)(collate_padded([example], PAD)) / total_targets
        loss.backward()
        alone_loss += loss.detach()
    torch.testing.assert_close(packed_loss.detach(), alone_loss, atol=1e-5, rtol=1e-5)
    for packed, alone in zip(packed_grads, gradients(model)):
        torch.testing.assert_close(packed, alone, atol=1e-6, rtol=1e-4)


def test_padded_and_packed_batches_give_the_same_loss():
    examples = random_examples(10, seed=3)
    model = tiny_model().eval()
    with torch.no_grad():
        padded = TargetLoss(model)(collate_padded(examples, PAD))
        packed = TargetLoss(model)(collate_packed(examples, 64, PAD))
    torch.testing.assert_close(padded, packed, atol=1e-4, rtol=1e-5)


def first_fit(lengths: list[int], row_length: int) -> list[list[int]]:
    rows: list[list[int]] = []
    used: list[int] = []
    for index, length in enumerate(lengths):
        row = next((r for r, n in enumerate(used) if n + length <= row_length), None)
        if row is None:
            rows.append([]), used.append(0)
            row = len(rows) - 1
        rows[row].append(index)
        used[row] += length
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_best_fit_decreasing_packs_tightly_and_never_overflows(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(5, 120) for _ in range(300)]
    rows = pack_rows(lengths, 128)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 128 for row in rows)
    assert len(rows) <= len(first_fit(lengths, 128))
    assert len(rows) <= 1.1 * sum(lengths) / 128 + 1  # within 10% of the bound


def test_a_sequence_longer_than_the_row_is_an_error():
    with pytest.raises(ValueError, match="longer than the row length 16"):
        pack_rows([4, 17, 3], 16)
    examples = random_examples(5, seed=4, shortest=30, longest=30)
    with pytest.raises(ValueError, match="pack_length=16"):
        plan_packing(examples, packing=True, pack_length=16)
    assert plan_packing(examples, packing=True, pack_length=None).row_length(examples) == 32
    assert plan_packing(examples, packing=True, pack_length=40).row_length(examples) == 40


def test_a_packed_step_budget_counts_the_documents_own_tokens():
    examples = random_examples(200, seed=5)
    batches = batch_indices(examples, tokens_per_batch=256, seed=0, packed=True)
    assert sorted(i for batch in batches for i in batch) == list(range(len(examples)))
    assert all(sum(len(examples[i].input_ids) for i in batch) <= 256 for batch in batches)


def test_loss_falls_over_packed_steps_and_parameters_change():
    examples = random_examples(24, seed=6)
    for example in examples:  # a learnable pattern: each target continues an arithmetic sequence
        start = example.input_ids[0]
        example.input_ids[:] = [(start + 3 * t) % (VOCAB - 1) + 1 for t in range(len(example.input_ids))]
        example.labels[:] = [IGNORE_INDEX if label == IGNORE_INDEX else token
                             for label, token in zip(example.labels, example.input_ids)]
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batch = collate_packed(examples, 64, PAD)
    losses = [train_step(TargetLoss(model), optimizer, scheduler, [batch], world=1) for _ in range(12)]
    assert losses[-1] < 0.7 * losses[0]
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_micro_batches_of_a_step_add_up_to_the_whole_step():
    examples = random_examples(16, seed=7)
    whole, split = tiny_model(), tiny_model()
    losses = []
    for model, micro_batches in ((whole, [collate_packed(examples, 64, PAD)]),
                                 (split, [collate_packed(examples[:5], 64, PAD), collate_packed(examples[5:], 64, PAD)])):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        losses.append(train_step(TargetLoss(model), optimizer, scheduler, micro_batches, world=1, max_grad_norm=1e9))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for a, b in zip(whole.parameters(), split.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def reference_varlen_attn(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1)):
    """What torch's CUDA-only varlen_attn computes (causal when window_size is (-1, 0)), per span."""
    assert window_size == (-1, 0) and torch.equal(cu_seq_q, cu_seq_k)
    out = torch.empty_like(q)
    for start, end in zip(cu_seq_q[:-1].tolist(), cu_seq_q[1:].tolist()):
        span = [t[start:end].transpose(0, 1) for t in (q, k, v)]  # (heads, tokens, head_dim)
        assert end - start <= max_q
        out[start:end] = F.scaled_dot_product_attention(*span, is_causal=True, scale=scale).transpose(0, 1)
    return out


def test_the_varlen_path_computes_what_the_packed_rows_compute(monkeypatch):
    """CPU twin of the CUDA path: flattened rows + varlen attention give the packed rows' logits."""
    import torch.nn.attention.varlen

    monkeypatch.setattr(torch.nn.attention.varlen, "varlen_attn", reference_varlen_attn)
    examples = random_examples(9, seed=8)
    batch = collate_packed(examples, 64, PAD)
    rows, varlen = tiny_model().eval(), tiny_model().eval()
    use_varlen_attention(varlen)
    flat = flatten_for_varlen(batch, max_length=64)
    assert flat["cu_seq_lens_q"][-1] == batch["input_ids"].numel()
    with torch.no_grad():
        expected = TargetLoss(rows)(batch)
        got = TargetLoss(varlen)(flat)
        row_logits = rows(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        flat_logits = varlen(**{k: v for k, v in flat.items() if k != "target_ids"}, use_cache=False).logits
    torch.testing.assert_close(flat_logits.reshape(row_logits.shape), row_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_the_varlen_path_takes_length_grouped_rows_as_one_document_each(monkeypatch):
    """A GPU without pack_length: each length-grouped row is one document of varlen attention
    (its padding after it, unseen by it), giving the rows' own loss."""
    import torch.nn.attention.varlen

    monkeypatch.setattr(torch.nn.attention.varlen, "varlen_attn", reference_varlen_attn)
    examples = random_examples(9, seed=8)
    for batch in step_micro_batches(examples, PackingPlan(packing=True), PAD, micro_batch_tokens=None):
        rows, width = batch["input_ids"].shape
        flat = flatten_for_varlen(batch, max_length=width)
        assert flat["cu_seq_lens_q"].tolist() == [row * width for row in range(rows + 1)]
        grouped, varlen = tiny_model().eval(), tiny_model().eval()
        use_varlen_attention(varlen)
        with torch.no_grad():
            torch.testing.assert_close(TargetLoss(varlen)(flat), TargetLoss(grouped)(batch), atol=1e-4, rtol=1e-5)


def group_cost(lengths: list[int], groups: list[list[int]]) -> float:
    """length_groups' cost model, written out: rows x row tokens (attention included) + a forward per group."""
    cost = 0.0
    for group in groups:
        longest = -(-max(lengths[i] for i in group) // 8) * 8
        cost += len(group) * longest * (1 + longest / 500) + 100
    return cost


@pytest.mark.parametrize("seed", range(20))
def test_length_groups_are_the_cheapest_split_of_the_sorted_items(seed):
    """Every item once, groups in length order of at least two rows, and no split of the sorted
    items into consecutive groups of two or more costs less (all of them tried)."""
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(5, 60), rng.randint(100, 480)]) for _ in range(rng.randint(2, 11))]
    groups = length_groups(lengths)
    order = [i for group in groups for i in group]
    assert sorted(order) == list(range(len(lengths)))
    assert [lengths[i] for i in order] == sorted(lengths)
    assert all(len(group) >= 2 for group in groups)
    splits = [list(cuts) for k in range(len(lengths)) for cuts in itertools.combinations(range(2, len(lengths) - 1), k)]
    costs = [group_cost(lengths, [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)])]) for cuts in splits
             if all(b - a >= 2 for a, b in zip([0, *cuts], [*cuts, len(order)]))]
    assert group_cost(lengths, groups) == pytest.approx(min(costs))
    assert length_groups([7]) == [[0]]


def test_a_step_in_length_grouped_rows_trains_like_one_by_one():
    """One document per row, rows of a micro-batch as long as its longest (rounded up to 8), no
    position ids and no mask, and the step's loss and gradients equal its documents' one by one."""
    examples = random_examples(20, seed=9, shortest=4, longest=60)
    micro_batches = step_micro_batches(examples, PackingPlan(packing=True), PAD, micro_batch_tokens=None)
    assert len(micro_batches) > 1 and all("position_ids" not in b for b in micro_batches)
    assert sum(b["input_ids"].shape[0] for b in micro_batches) == len(examples)
    for batch in micro_batches:
        longest = int((batch["input_ids"] != PAD).sum(dim=1).max())
        assert batch["input_ids"].shape[1] == -(-longest // 8) * 8
    model, alone_model = tiny_model(), tiny_model()
    total_targets = sum(target_count(b) for b in micro_batches)
    (sum(TargetLoss(model)(b) for b in micro_batches) / total_targets).backward()
    (sum(TargetLoss(alone_model)(collate_padded([e], PAD)) for e in examples) / total_targets).backward()
    for grouped, alone in zip(gradients(model), gradients(alone_model)):
        torch.testing.assert_close(grouped, alone, atol=1e-5, rtol=1e-4)


def test_micro_batch_tokens_split_length_groups():
    examples = random_examples(20, seed=9, shortest=4, longest=60)
    whole = step_micro_batches(examples, PackingPlan(packing=True), PAD, micro_batch_tokens=None)
    split = step_micro_batches(examples, PackingPlan(packing=True), PAD, micro_batch_tokens=128)
    assert all(b["input_ids"].numel() <= 128 or b["input_ids"].shape[0] == 1 for b in split)
    assert len(split) > len(whole)
    rows = [[row.tolist() for b in micro_batches for row in b["target_ids"]] for micro_batches in (split, whole)]
    assert rows[0] == rows[1]


def test_a_step_whose_examples_all_need_long_rows_packs():
    examples = random_examples(6, seed=10, shortest=30, longest=30)
    micro_batches = step_micro_batches(examples, PackingPlan(packing=True), PAD, micro_batch_tokens=None)
    assert [b["input_ids"].shape for b in micro_batches] == [(6, 32)]


def test_packing_is_checked_on_the_model_itself_and_bloom_cannot_pack():
    """LLaMA keeps packed documents apart (its position ids restart per document); BLOOM's ALiBi
    attention takes no position ids, so its packed documents would see each other: the trainer
    trains it on padded rows (trainables.train.packing_for). The check leaves the model's mode."""
    llama = tiny_model()
    assert keeps_documents_apart(llama) and llama.training
    torch.manual_seed(0)
    bloom = BloomForCausalLM(BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=2))
    bloom.eval()
    assert not keeps_documents_apart(bloom) and not bloom.training
