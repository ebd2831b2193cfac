"""Generating corpora through the one OpenAI-compatible client: an `openai` teacher pointed at a
local server that counts requests, fails on command, and answers arith questions."""

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import small_spec

from study.core import storage
from study.core.cells import corpus_keys, expand_grid
from study.core.corpora import missing_corpora
from study.core.datasets import load_split
from study.run.inputs import check_inputs
from study.core.prompts import PromptError, load_library, teacher_instruction
from study.core.spec import parse_spec
from study.core.storage import StudyPaths
from study.run.cli import main
from study.run.studies import open_study, prepare_storage
from study.teachers.client import ChatClient, ChatRequest, TeacherError
from study.teachers.generate import build_corpora

SECRET = "sk-test-7f3a9c1e5b"


class FakeTeacher:
    """A local OpenAI-compatible endpoint: answers each arith question right (or wrong when the
    request's seed is below `wrong_below_seed`), fails `fail_first` requests with HTTP `fail_status`
    (500; with a `Retry-After: retry_after` header when set), and fails every request after
    `fail_after` (an interrupted run). `times`: when each request arrived (time.monotonic)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.requests: list[dict] = []
        self.headers: list[str] = []
        self.fail_first = 0
        self.fail_status = 500
        self.retry_after: str | None = None
        self.times: list[float] = []
        self.fail_after: int | None = None
        self.wrong_below_seed = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _reply(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            self.requests.append(body)
            self.times.append(time.monotonic())
            count = len(self.requests)
        if count <= self.fail_first or (self.fail_after is not None and count > self.fail_after):
            return self.fail_status, {"error": {"message": "overloaded"}}
        if body["model"] != "fake-model":
            return 404, {"error": {"message": "no such model"}}
        question = body["messages"][-1]["content"]
        answer = self.answers[question] if body.get("seed", 0) >= self.wrong_below_seed else "-1"
        text = f"Some reasoning. The answer is {answer}."
        return 200, {"choices": [{"message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": 20, "completion_tokens": 6}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status != 200 and fake.retry_after is not None:
                    self.send_header("Retry-After", fake.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"data": [{"id": "fake-model"}]})

            def do_POST(self):
                fake.headers.append(self.headers.get("Authorization", ""))
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self._send(*fake._reply(body))

        return Handler

    def close(self):
        self.server.shutdown()


@pytest.fixture
def fake_teacher():
    spec = parse_spec(small_spec(Path("unused")))
    answers = {p.question: p.answer for split in ("train", "test") for p in load_split(spec.datasets[0], split)}
    teacher = FakeTeacher(answers)
    yield teacher
    teacher.close()


def _spec(tmp_path, fake, **teacher_fields):
    teacher = {"kind": "openai", "name": "api", "base_url": fake.base_url, "model": "fake-model",
               "api_key_env": "COTSTUDY_TEST_KEY", "max_retries": 2, "concurrency": 4,
               "price": {"usd_per_million_prompt_tokens": 1.0, "usd_per_million_completion_tokens": 2.0},
               **teacher_fields}
    return parse_spec(small_spec(tmp_path / "out", teachers=[teacher], formats=["cot"]))


def _build(spec):
    paths = StudyPaths.of(spec.storage, spec.name)
    keys = corpus_keys(spec)
    build_corpora(spec, paths, keys)
    return paths, keys


def test_generates_records_usage_and_a_second_run_asks_nothing(tmp_path, fake_teacher, monkeypatch):
    monkeypatch.setenv("COTSTUDY_TEST_KEY", SECRET)
    spec = _spec(tmp_path, fake_teacher)
    paths, keys = _build(spec)
    corpus = storage.read_parquet(paths.corpus(keys[0].corpus_id))
    assert len(corpus) == 80 and corpus["correct"].all() and len(fake_teacher.requests) == 80
    card = json.loads(storage.read_text(paths.corpus_card(keys[0].corpus_id)))
    assert card["prompt_tokens"] == 80 * 20 and card["completion_tokens"] == 80 * 6
    assert card["cost_usd"] == pytest.approx((1600 * 1.0 + 480 * 2.0) / 1e6) and card["correct_rate"] == 1.0
    assert set(fake_teacher.headers) == {f"Bearer {SECRET}"}
    system = fake_teacher.requests[0]["messages"][0]["content"]
    assert system == teacher_instruction(3, "cot", "number") and "The answer is" in system
    _build(spec)
    assert len(fake_teacher.requests) == 80  # the corpus exists: the teacher is not asked again
    for path in Path(spec.storage).rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_interrupted_generation_resumes_with_only_the_missing_rows(tmp_path, fake_teacher, monkeypatch):
    monkeypatch.setenv("COTSTUDY_TEST_KEY", SECRET)
    spec = _spec(tmp_path, fake_teacher, max_retries=0, concurrency=1)
    fake_teacher.fail_after = 50
    with pytest.raises(TeacherError, match="HTTP 500"):
        _build(spec)
    paths = StudyPaths.of(spec.storage, spec.name)
    assert missing_corpora(paths, corpus_keys(spec)) == corpus_keys(spec)  # no partial corpus
    saved = storage.list_files(paths.generation_shards(corpus_keys(spec)[0].corpus_id), ".parquet")
    assert sum(len(storage.read_parquet(s)) for s in saved) == 50
    fake_teacher.fail_after = None
    asked_before = len(fake_teacher.requests)
    _build(spec)
    assert len(fake_teacher.requests) - asked_before == 30  # only the missing rows
    card = json.loads(storage.read_text(paths.corpus_card(corpus_keys(spec)[0].corpus_id)))
    assert (card["requests"], card["new_requests"]) == (80, 30)


def test_retries_then_succeeds_and_always_failing_leaves_no_corpus(tmp_path, fake_teacher, monkeypatch):
    monkeypatch.setenv("COTSTUDY_TEST_KEY", SECRET)
    fake_teacher.fail_first = 3
    client = ChatClient(base_url=fake_teacher.base_url, max_retries=3, backoff_s=0.01)
    question = next(iter(fake_teacher.answers))
    reply = client.complete_all([ChatRequest(model="fake-model", messages=[{"role": "user", "content": question}])])
    assert "The answer is" in reply[0].text and len(fake_teacher.requests) == 4
    fake_teacher.fail_after = 0
    spec = _spec(tmp_path, fake_teacher, max_retries=1)
    with pytest.raises(TeacherError, match=r"failed for model 'fake-model': HTTP 500"):
        _build(spec)
    assert not list(Path(spec.storage).rglob("corpora/*.parquet"))


def test_a_429_with_retry_after_waits_that_long_and_backoff_has_jitter(fake_teacher):
    fake_teacher.fail_first, fake_teacher.fail_status, fake_teacher.retry_after = 2, 429, "0.6"
    client = ChatClient(base_url=fake_teacher.base_url, max_retries=2, backoff_s=0.01)
    question = next(iter(fake_teacher.answers))
    reply = client.complete_all([ChatRequest(model="fake-model", messages=[{"role": "user", "content": question}])])
    assert "The answer is" in reply[0].text and len(fake_teacher.requests) == 3
    gaps = [later - earlier for earlier, later in zip(fake_teacher.times, fake_teacher.times[1:])]
    assert all(0.6 <= gap < 1.5 for gap in gaps), f"Retry-After 0.6 s, not the 0.01 s backoff: {gaps}"
    waits = [ChatClient(base_url="unused", backoff_s=1.0).backoff(attempt=2) for _ in range(50)]
    assert all(2.0 <= wait < 6.0 for wait in waits) and len(set(waits)) > 40, "4 s x a random factor in [0.5, 1.5)"


def test_retry_after_is_read_as_seconds_or_an_http_date():
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from study.teachers.client import MAX_RETRY_AFTER_S, retry_after_s

    in_ten = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=10), usegmt=True)
    assert retry_after_s("3") == 3.0 and 8.0 < retry_after_s(in_ten) <= 10.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("86400") == MAX_RETRY_AFTER_S


def test_rejection_sampling_keeps_the_first_correct_sample(tmp_path, fake_teacher, monkeypatch):
    monkeypatch.setenv("COTSTUDY_TEST_KEY", SECRET)
    fake_teacher.wrong_below_seed = 1  # sample 0 answers wrong, later samples right
    spec = _spec(tmp_path, fake_teacher, generation={"temperature": 0.7, "max_attempts": 3})
    paths, keys = _build(spec)
    corpus = storage.read_parquet(paths.corpus(keys[0].corpus_id))
    assert corpus["correct"].all() and len(fake_teacher.requests) == 160  # two attempts, not three
    greedy = _spec(tmp_path / "greedy", fake_teacher)
    paths, keys = _build(greedy)
    kept = storage.read_parquet(paths.corpus(keys[0].corpus_id))
    assert not kept["correct"].any() and kept["answer"].eq("-1").all()  # kept, marked, counted


def test_bad_teacher_inputs_fail_before_any_row(tmp_path, fake_teacher, monkeypatch):
    monkeypatch.delenv("COTSTUDY_TEST_KEY", raising=False)
    spec = _spec(tmp_path, fake_teacher)
    with pytest.raises(Exception, match=r"environment variable COTSTUDY_TEST_KEY .* is not set"):
        check_inputs(spec)
    monkeypatch.setenv("COTSTUDY_TEST_KEY", SECRET)
    with pytest.raises(TeacherError, match=r"does not serve model 'other'; it serves \['fake-model'\]"):
        _build(_spec(tmp_path, fake_teacher, model="other"))
    with pytest.raises(TeacherError, match=r"cannot reach the teacher at http://127.0.0.1:9/v1"):
        _build(_spec(tmp_path, fake_teacher, base_url="http://127.0.0.1:9/v1"))
    assert fake_teacher.requests == []


def test_prompt_library_changes_the_corpus_id_and_must_ask_for_the_answer(tmp_path, fake_teacher):
    library = load_library(None)
    edited = {**library, "granularity": {**library["granularity"], 3: "Think in three sentences."}}
    (tmp_path / "mine.yaml").write_text(json.dumps(edited))
    default, mine = _spec(tmp_path, fake_teacher), _spec(tmp_path, fake_teacher, prompts=str(tmp_path / "mine.yaml"))
    assert corpus_keys(default)[0].corpus_id != corpus_keys(mine)[0].corpus_id
    (tmp_path / "bad.yaml").write_text(json.dumps({**library, "answer": {**library["answer"], "number": "Say it."}}))
    with pytest.raises(PromptError, match=r"bad.yaml: answer.number: the prompt must ask for the answer convention"):
        corpus_keys(_spec(tmp_path, fake_teacher, prompts=str(tmp_path / "bad.yaml")))


def test_a_study_keeps_its_prompts_so_status_needs_no_file_outside_it(tmp_path, fake_teacher, capsys):
    """The prompt library's content is in the corpus and cell ids: `run` freezes it into the study
    folder, so `status` (and `resume`) work after the original file is gone and the folder moved."""
    library = load_library(None)
    mine = tmp_path / "mine.yaml"
    mine.write_text(json.dumps({**library, "granularity": {**library["granularity"], 3: "Think in three sentences."}}))
    spec = _spec(tmp_path, fake_teacher, prompts=str(mine))
    paths, cells = prepare_storage(spec)
    mine.unlink()
    load_library.cache_clear()  # as in a new process: nothing read before is remembered
    (tmp_path / "elsewhere").mkdir()
    moved = shutil.move(paths.root, tmp_path / "elsewhere" / "small")
    assert main(["status", str(moved)]) == 0
    assert "0 done, 0 failed, 1 pending (of 1)" in capsys.readouterr().out
    opened, _ = open_study(str(moved))
    assert [c.cell_id for c in expand_grid(opened)] == [c.cell_id for c in cells]
    assert str(mine) not in (moved / "spec.yaml").read_text()


@pytest.mark.ray
def test_hf_teacher_on_serve_resumes_after_a_kill_and_an_openai_teacher_reuses_it(tmp_path, ray_local):
    """The real path: a tiny transformers teacher on Ray Serve generates a corpus over HTTP; the
    served app is killed midway, and the re-run asks only for the rows not saved yet."""
    import time as clock

    from ray import serve
    from test_teacher_serving import save_tiny_llama

    from study.core.spec import HfTeacher
    from study.teachers.hf_serve import deploy_hf_teacher
    from study.teachers.endpoint import start_serve, stop_teacher

    model = save_tiny_llama(tmp_path / "teacher", context_tokens=1024)
    teacher = {"kind": "hf", "name": "tiny", "model": str(model), "max_retries": 0, "batch_size": 8,
               "concurrency": 8, "generation": {"max_tokens": 8}}
    spec = parse_spec(small_spec(tmp_path / "out", teachers=[teacher], formats=["cot"],
                                 datasets=[{"name": "arith", "arith": {"n_train": 100, "n_test": 10}}]))
    key = corpus_keys(spec)[0]
    paths = StudyPaths.of(spec.storage, spec.name)
    shards = paths.generation_shards(key.corpus_id)

    def kill_the_teacher_after_a_shard():
        deadline = clock.monotonic() + 120
        while not storage.list_files(shards, ".parquet") and clock.monotonic() < deadline:
            clock.sleep(0.05)
        serve.delete("small-teacher-tiny")  # the study's own app: <study>-teacher-<name>

    killer = threading.Thread(target=kill_the_teacher_after_a_shard)
    killer.start()
    with pytest.raises(TeacherError):
        build_corpora(spec, paths, [key])
    killer.join()
    saved = sum(len(storage.read_parquet(s)) for s in storage.list_files(shards, ".parquet"))
    assert 64 <= saved < 100 and not storage.exists(paths.corpus(key.corpus_id))

    build_corpora(spec, paths, [key])
    card = json.loads(storage.read_text(paths.corpus_card(key.corpus_id)))
    assert (card["rows"], card["requests"], card["new_requests"]) == (100, 100, 100 - saved)
    assert card["completion_tokens"] > 0 and card["prompt_tokens"] > 0
    build_corpora(spec, paths, [key])  # built: nothing is served, nothing asked
    assert json.loads(storage.read_text(paths.corpus_card(key.corpus_id))) == card

    endpoint = deploy_hf_teacher(HfTeacher(**teacher), start_serve())
    try:
        api = {"kind": "openai", "name": "api", "base_url": endpoint.base_url, "model": endpoint.model,
               "generation": {"max_tokens": 8}}
        reuse = parse_spec(small_spec(tmp_path / "out2", teachers=[api], formats=["cot"],
                                      datasets=[{"name": "arith", "arith": {"n_train": 100, "n_test": 10}}]))
        api_paths, api_keys = _build(reuse)
        api_card = json.loads(storage.read_text(api_paths.corpus_card(api_keys[0].corpus_id)))
        assert (api_card["rows"], api_card["new_requests"]) == (100, 100)
        ours = storage.read_parquet(paths.corpus(key.corpus_id))["rationale"].tolist()
        assert storage.read_parquet(api_paths.corpus(api_keys[0].corpus_id))["rationale"].tolist() == ours
    finally:
        stop_teacher(endpoint)
