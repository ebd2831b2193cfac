"""Teacher replies saved as they arrive, so an interrupted generation resumes with only the
missing rows.

Each reply is stored under its request's content address (`ChatRequest.key`: teacher model,
sampling parameters, the prompt and the question) in parquet shards under
`<study>/generation/<corpus_id>/`. A shard is written atomically every `shard_rows` replies and
whenever the generation stops, error or not. The corpus itself is written only when complete.
"""

from __future__ import annotations

import uuid

import pandas as pd

from study.core import storage
from study.teachers.client import ChatReply, ChatRequest

SHARD_COLUMNS = ["key", "text", "prompt_tokens", "completion_tokens"]


class ReplyCache:
    def __init__(self, folder: str, shard_rows: int = 64) -> None:
        self.folder = folder
        self.shard_rows = shard_rows
        self.replies: dict[str, ChatReply] = {}
        self.unsaved: list[tuple[str, ChatReply]] = []
        for shard in storage.list_files(folder, ".parquet"):
            for row in storage.read_parquet(shard).itertuples(index=False):
                self.replies[row.key] = ChatReply(row.text, int(row.prompt_tokens), int(row.completion_tokens))

    def get(self, request: ChatRequest) -> ChatReply | None:
        return self.replies.get(request.key)

    def add(self, request: ChatRequest, reply: ChatReply) -> None:
        self.replies[request.key] = reply
        self.unsaved.append((request.key, reply))
        if len(self.unsaved) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self.unsaved:
            return
        frame = pd.DataFrame([(key, r.text, r.prompt_tokens, r.completion_tokens) for key, r in self.unsaved],
                             columns=SHARD_COLUMNS)
        storage.make_dirs(self.folder)
        storage.write_parquet_atomic(storage.join(self.folder, f"shard-{uuid.uuid4().hex[:12]}.parquet"), frame)
        self.unsaved = []
