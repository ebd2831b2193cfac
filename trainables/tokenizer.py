"""The study tokenizer: a small byte-level BPE trained once per study on its corpora.

Digit runs (with their leading space) are split off before BPE, so a whole number is one
pre-token and, being frequent, one token; byte-level symbols make decoding restore any text.

Tiny students with a template other than `plain` (study/core/templates.py) need the template's
markers (`<|start_header_id|>`, `<start_of_turn>`, ...) as single tokens and a BOS token: those
are added as special tokens after training, at the end of the vocabulary, so the BPE and every
id it gives stay as they are; a study whose tiny students are all `plain` gets exactly the
tokenizer it always got.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from study.core import storage
from study.core.cells import CorpusKey
from study.core.corpora import load_corpus
from study.core.datasets import training_text
from study.core.storage import StudyPaths
from study.core.templates import student_template, template_markers

log = logging.getLogger(__name__)

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|eos|>"
BOS_TOKEN = "<|bos|>"  # the study's own BOS, for every template that asks for one


def train_tokenizer(texts: Iterable[str], vocab_size: int, templates: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A BPE of about `vocab_size` tokens trained on `texts`, holding the special tokens that
    `templates` (the tiny students' templates) need."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?\d+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    # All 256 byte symbols are in the alphabet, so text the corpora never showed (a new letter in
    # a test question) still encodes and decodes exactly instead of vanishing.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD_TOKEN, EOS_TOKEN], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    study_tokenizer = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN)
    add_template_tokens(study_tokenizer, templates)
    return study_tokenizer


def add_template_tokens(tokenizer: PreTrainedTokenizerFast, templates: Iterable[str]) -> None:
    """Give `tokenizer` the markers of `templates` as special tokens, and BOS where one asks for
    it; nothing for `plain` (or `alpaca`, whose text has no markers)."""
    markers = template_markers(templates)
    special: dict = {"additional_special_tokens": list(markers)} if markers else {}
    if any(student_template(name).bos for name in templates):
        special["bos_token"] = BOS_TOKEN
    if special:
        tokenizer.add_special_tokens(special)


def load_tokenizer(local_dir: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(local_dir))


def ensure_study_tokenizer(paths: StudyPaths, keys: list[CorpusKey], vocab_size: int,
                           templates: Iterable[str] = ()) -> None:
    """Train the study tokenizer on its corpora once, with the special tokens of `templates` (the
    tiny students' templates); an existing one is always reused, so every cell of a study (and
    every later resume) sees the same token ids."""
    if storage.exists(storage.join(paths.tokenizer, "tokenizer.json")):
        return
    texts: list[str] = []
    for key in keys:
        corpus = load_corpus(paths, key)
        texts += [training_text(key.dataset.name, q, r) for q, r in zip(corpus["question"], corpus["rationale"])]
    templates = list(templates)
    tokenizer = train_tokenizer(texts, vocab_size, templates)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        storage.upload_dir(Path(scratch), paths.tokenizer)
    log.info(f"tokenizer: {len(tokenizer)} tokens, trained on {len(texts)} texts")
