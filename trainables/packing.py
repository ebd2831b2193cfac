"""A step's examples as micro-batches: packed rows of a fixed length, or length-grouped rows.

With a fixed row length (`pack_length`, a GPU's one shape to compile), a step's examples are
placed into rows of that many tokens by best-fit decreasing (longest first, each into the fullest
row that still has room). Inside a row, position ids restart at 0 at every document, and the
unused tail of a row is one more "document" of padding whose targets are ignored. Targets are
shifted per document, so a document's last token never learns to predict the next document's
first one: a packed document sees exactly what it would see alone.

Without one (the CPU default), each document has a row of its own: the step's documents are
sorted by length and split into micro-batches of rows just long enough for their longest
(`length_groups`). No mask is built and attention runs causal over each row, so it costs what the
documents' own lengths cost; the padding after a document is never seen by it, and its targets
are ignored. On the tiny student of bench/train_throughput.py this beat packing into rows of the
step's longest example and half that (which needs a document mask) by about 10% per token.

How attention stays inside packed documents (an architecture whose attention takes no position
ids, such as BLOOM's ALiBi, cannot: `keeps_documents_apart` finds that out on the model itself,
and the trainer then trains it on padded rows, which give the same loss):
- sdpa / eager (CPU, and the GPU fallback): the model gets `position_ids` and no attention mask
  (and `use_cache=False`). transformers 5 then finds the document boundaries in the position ids
  and builds the block-diagonal causal mask itself. An all-ones attention mask would silently
  turn this off and let documents see each other, so none is ever passed.
- `varlen` (CUDA): the rows are flattened into one sequence and attention runs through
  `torch.nn.attention.varlen.varlen_attn` (flash attention over variable-length documents, no
  mask at all), from the cumulative document lengths passed as `cu_seq_lens_q/_k`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, PreTrainedModel

from trainables.data import IGNORE_INDEX, TEACHER_KEYS, Example, collate, teacher_entries

VARLEN_ATTENTION = "cotstudy_varlen"


@dataclass(frozen=True)
class PackingPlan:
    """How a step's examples become micro-batches: packed rows of `pack_length` tokens, or when
    that is None, length-grouped rows (one document each, `length_groups`); or, when not packing,
    padded rows of the step's longest example with an attention mask."""

    packing: bool
    pack_length: int | None = None

    def row_length(self, examples: list[Example]) -> int:
        if self.pack_length is not None:
            return self.pack_length
        return rounded_length(max(len(e.input_ids) for e in examples))


class _Rows:
    """Rows of one length being filled best-fit: each item goes to the row with the least room
    that still fits it."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.rows: list[list[int]] = []
        self.room: list[tuple[int, int]] = []  # (free tokens, row number), kept sorted

    def fit(self, index: int, length: int) -> bool:
        slot = bisect.bisect_left(self.room, (length, -1))
        if slot == len(self.room):
            return False
        free, row = self.room.pop(slot)
        self.rows[row].append(index)
        bisect.insort(self.room, (free - length, row))
        return True

    def open(self, index: int, length: int) -> None:
        self.rows.append([index])
        bisect.insort(self.room, (self.length - length, len(self.rows) - 1))


def _longest_first(lengths: list[int], row_length: int) -> list[int]:
    too_long = [n for n in lengths if n > row_length]
    if too_long:
        raise ValueError(f"{len(too_long)} sequences are longer than the row length {row_length} (longest {max(too_long)})")
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def pack_rows(lengths: list[int], row_length: int) -> list[list[int]]:
    """Best-fit decreasing: indices of `lengths` grouped into rows of at most row_length tokens.

    Longest first, each item goes to the row with the least room that still fits it (a new row
    when none does). Ties keep input order, so a shuffled input gives a shuffled packing."""
    rows = _Rows(row_length)
    for index in _longest_first(lengths, row_length):
        if not rows.fit(index, lengths[index]):
            rows.open(index, lengths[index])
    return rows.rows


ROW_MULTIPLE = 8  # row lengths are rounded up to this
FORWARD_COST_TOKENS = 100  # a micro-batch's fixed cost (a forward and backward call), in row tokens
ATTENTION_TOKENS = 500  # a row of L tokens costs L * (1 + L / ATTENTION_TOKENS) row tokens (attention)


def rounded_length(length: int) -> int:
    return -(-length // ROW_MULTIPLE) * ROW_MULTIPLE


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices of `lengths` sorted by length (ties in input order) and split into consecutive
    groups, each to be padded to its longest (rounded up to 8): the split that costs least when a
    group of n rows of L tokens costs n * L * (1 + L / ATTENTION_TOKENS) + FORWARD_COST_TOKENS
    (dynamic programming over the sorted lengths). Each group has at least two rows when there
    are two items, so a compiled model sees no batch of one (torch.compile specialises on 1).
    The constants were fitted by timing bench/train_throughput.py's tiny student on a CPU."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_lengths = [rounded_length(lengths[i]) for i in order]
    n, smallest_group = len(order), 2 if len(order) > 1 else 1
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for end in range(smallest_group, n + 1):
        row = sorted_lengths[end - 1] * (1 + sorted_lengths[end - 1] / ATTENTION_TOKENS)
        for start in range(end - smallest_group + 1):
            cost = best[start] + (end - start) * row + FORWARD_COST_TOKENS
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def shifted_targets(labels: list[int]) -> list[int]:
    """Next-token targets of one document: position t predicts labels[t + 1]; the last predicts nothing."""
    return labels[1:] + [IGNORE_INDEX]


def collate_packed(examples: list[Example], row_length: int, pad_id: int) -> dict[str, torch.Tensor]:
    """One micro-batch of packed rows: input_ids, position_ids and target_ids (rows x row_length).

    No attention_mask on purpose (see the module docstring)."""
    return collate_rows(examples, pack_rows([len(e.input_ids) for e in examples], row_length), row_length, pad_id)


def collate_rows(examples: list[Example], rows: list[list[int]], row_length: int, pad_id: int,
                 positions_by_document: bool = True) -> dict[str, torch.Tensor]:
    """Rows of examples (indices from pack_rows) as tensors; each row's tail is padding. Without
    `positions_by_document` (one document per row) no position ids are passed: the model's own,
    0, 1, ..., are the document's, and transformers builds no mask (attention runs causal). Even
    position ids of 0, 1, ... would make it build one under torch.compile, which cannot check
    whether they restart."""
    input_ids = torch.full((len(rows), row_length), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), row_length), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), row_length), dtype=torch.long)
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            example = examples[index]
            end = start + len(example.input_ids)
            input_ids[row, start:end] = torch.tensor(example.input_ids)
            targets[row, start:end] = torch.tensor(shifted_targets(example.labels))
            positions[row, start:end] = torch.arange(end - start)
            start = end
        positions[row, start:] = torch.arange(row_length - start)  # the padding tail: its own document
    in_batch_order = [examples[index] for members in rows for index in members]
    return {"input_ids": input_ids, **({"position_ids": positions} if positions_by_document else {}),
            "target_ids": targets, **teacher_entries(in_batch_order)}


def step_micro_batches(examples: list[Example], plan: PackingPlan, pad_id: int,
                       micro_batch_tokens: int | None) -> list[dict[str, torch.Tensor]]:
    """A step's examples as micro-batches of at most micro_batch_tokens tokens each (rows x row
    length; None: no limit). Packed at pack_length: the whole step is packed first, then its rows
    split; packed without it: length-grouped rows, each group split; padded: consecutive examples,
    as many as fit padded to the step's longest."""
    if plan.packing and plan.pack_length is not None:
        rows = pack_rows([len(e.input_ids) for e in examples], plan.pack_length)
        return [collate_rows(examples, part, plan.pack_length, pad_id)
                for part in _split(rows, plan.pack_length, micro_batch_tokens)]
    if plan.packing:
        micro_batches = []
        for group in length_groups([len(e.input_ids) for e in examples]):
            length = rounded_length(len(examples[group[-1]].input_ids))
            micro_batches += [collate_rows(examples, [[index] for index in part], length, pad_id, positions_by_document=False)
                              for part in _split(group, length, micro_batch_tokens)]
        return micro_batches
    longest = max(len(e.input_ids) for e in examples)
    return [collate_padded(part, pad_id) for part in _split(examples, longest, micro_batch_tokens)]


def _split(rows: list, row_length: int, micro_batch_tokens: int | None) -> list[list]:
    """Consecutive parts of `rows` of at most micro_batch_tokens tokens (at least one row each)."""
    per_micro = len(rows) if micro_batch_tokens is None else max(1, micro_batch_tokens // row_length)
    return [rows[i : i + per_micro] for i in range(0, len(rows), per_micro)]


def collate_padded(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """The unpacked alternative: right-padded rows, padding masked from attention and targets."""
    batch = collate(examples, pad_id)
    labels = batch.pop("labels")
    targets = torch.full_like(labels, IGNORE_INDEX)
    targets[:, :-1] = labels[:, 1:]
    return {**batch, "target_ids": targets, **teacher_entries(examples)}


def flatten_for_varlen(batch: dict[str, torch.Tensor], max_length: int) -> dict:
    """The packed rows as one sequence with cumulative document lengths, for `varlen` attention.
    max_length bounds every document (the row length): a constant, so torch.compile keeps one graph.
    Rows without position ids hold one document each (length-grouped rows)."""
    rows, row_length = batch["input_ids"].shape
    positions = batch.get("position_ids", torch.arange(row_length).repeat(rows, 1)).reshape(1, -1)
    starts = torch.nonzero(positions[0] == 0).flatten()
    total = positions.shape[1]
    cu_seq_lens = torch.cat([starts, torch.tensor([total], device=starts.device)]).to(torch.int32)
    return {"input_ids": batch["input_ids"].reshape(1, -1), "position_ids": positions,
            "target_ids": batch["target_ids"].reshape(1, -1), "cu_seq_lens_q": cu_seq_lens, "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": max_length, "max_length_k": max_length,
            **{name: batch[name] for name in TEACHER_KEYS if name in batch}}  # row-major: the order stays


def varlen_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function over flattened documents (batch of one): causal flash
    attention inside each [cu_seq_lens[i], cu_seq_lens[i+1]) span, nothing across spans."""
    from torch.nn.attention.varlen import varlen_attn  # CUDA only; torch >= 2.11 (window_size)

    heads, kv_heads = query.shape[1], key.shape[1]
    if kv_heads != heads:  # grouped-query attention: share each kv head with its query group
        key = key.repeat_interleave(heads // kv_heads, dim=1)
        value = value.repeat_interleave(heads // kv_heads, dim=1)
    # flash attention takes bf16/fp16 only, and autocast does not cover this op (rotary embeddings
    # leave q and k in fp32 under autocast): cast to the autocast dtype here
    dtype = torch.get_autocast_dtype(query.device.type) if torch.is_autocast_enabled(query.device.type) else value.dtype
    q, k, v = (t[0].transpose(0, 1).to(dtype) for t in (query, key, value))  # (tokens, heads, head_dim)
    out = varlen_attn(q, k, v, kwargs["cu_seq_lens_q"], kwargs["cu_seq_lens_k"], kwargs["max_length_q"],
                      kwargs["max_length_k"], scale=scaling, window_size=(-1, 0))
    return out.unsqueeze(0), None


def use_varlen_attention(model: PreTrainedModel) -> None:
    """Switch a CUDA model to `varlen` attention (registers the function with transformers)."""
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    model.set_attn_implementation(VARLEN_ATTENTION)


def plan_packing(examples: list[Example], packing: bool, pack_length: int | None) -> PackingPlan:
    """The spec's packing, checked against the examples before training starts. Without a fixed
    pack_length each document gets a row just long enough for it and the others of its length
    group: on CPU short rows beat 1-2k-token ones, since attention grows with a row's square."""
    longest = max(len(e.input_ids) for e in examples)
    if packing and pack_length is not None and pack_length < longest:
        raise ValueError(f"training.pack_length={pack_length} is shorter than the longest kept example ({longest} tokens)")
    return PackingPlan(packing=packing, pack_length=pack_length)


@torch.no_grad()
def keeps_documents_apart(model: PreTrainedModel, length: int = 6) -> bool:
    """Whether `model` keeps packed documents apart: the logits of a document packed after another
    (position ids restarting at 0) equal the logits of the document alone. Checked on the model
    itself (in eval mode, on its device), so any architecture is judged by what it does."""
    was_training = model.training
    model.eval()
    try:
        vocab = model.get_input_embeddings().num_embeddings
        device = model.get_input_embeddings().weight.device
        tokens = torch.arange(3, 3 + 2 * length, device=device).remainder(vocab).unsqueeze(0)
        positions = torch.arange(length, device=device).repeat(2).unsqueeze(0)
        packed = model(input_ids=tokens, position_ids=positions, use_cache=False).logits[0, length:]
        alone = model(input_ids=tokens[:, length:], position_ids=positions[:, :length], use_cache=False).logits[0]
    except TypeError:  # a forward that takes no position ids
        return False
    finally:
        model.train(was_training)
    return bool(torch.allclose(packed.float(), alone.float(), rtol=1e-3, atol=1e-4))
