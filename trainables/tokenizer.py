"""The study tokenizer: a small byte-level BPE trained once per study on its corpora.

Digit runs (with their leading space) are split off before BPE, so a whole number is one
pre-token and, being frequent, one token; byte-level symbols make decoding restore any text.
"""

from __future__ import annotations

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

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|eos|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
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
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN)


def load_tokenizer(local_dir: Path) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast.from_pretrained(str(local_dir))


def ensure_study_tokenizer(paths: StudyPaths, keys: list[CorpusKey], vocab_size: int) -> None:
    """Train the study tokenizer on its corpora once; an existing one is always reused, so every
    cell of a study (and every later resume) sees the same token ids."""
    if storage.exists(storage.join(paths.tokenizer, "tokenizer.json")):
        return
    texts: list[str] = []
    for key in keys:
        corpus = load_corpus(paths, key)
        texts += [training_text(key.dataset.name, q, r) for q, r in zip(corpus["question"], corpus["rationale"])]
    tokenizer = train_tokenizer(texts, vocab_size)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        storage.upload_dir(Path(scratch), paths.tokenizer)
    print(f"tokenizer: {len(tokenizer)} tokens, trained on {len(texts)} texts", flush=True)
