"""Training layouts on a real local Ray Train: two workers sharded by FSDP2 (gloo) follow the
same trajectory as one worker, and a run that fails after a checkpoint resumes at that step and
ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import small_spec
from faults import failing_train_loop

from study.run.launch import _prepare_inputs
from study.core.spec import ResourcesSpec, parse_spec
from study.core.storage import StudyPaths
from study.run.studies import prepare_storage
from trainables.cell import fit_cell

pytestmark = pytest.mark.ray

STEPS, PER_EPOCH = 12, 10  # 80 examples, 8 per step: a checkpoint at step 10 (checkpoint_every_s=0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, ray_local):
    """One study's corpus and tokenizer; each test copies the study so each Train run is fresh."""
    root = tmp_path_factory.mktemp("layouts")
    spec = parse_spec(small_spec(root / "out", name="layouts", formats=["cot"],
                                 students=[{"name": "s", "tiny": {"layers": 2, "width": 32, "heads": 2}}],
                                 training={"max_steps": STEPS, "examples_per_batch": 8, "max_length": 256},
                                 evaluation={"max_new_tokens": 8, "test_size": 8}))
    paths, (cell,) = prepare_storage(spec)
    _prepare_inputs(spec, paths)
    return paths, cell


def _fresh_copy(paths: StudyPaths, target: Path) -> StudyPaths:
    shutil.copytree(paths.root, target / "study", ignore=shutil.ignore_patterns("cells"))
    return StudyPaths(str(target / "study"))


def _resources(workers: int, **extra: object) -> ResourcesSpec:
    return ResourcesSpec(workers_per_trial=workers, cpus_per_worker=1, checkpoint_every_s=0, **extra)


def test_two_fsdp2_workers_match_one_and_resume_at_their_checkpoint(prepared, tmp_path):
    """One worker, then two FSDP2 workers whose first attempt fails after the step-10 checkpoint:
    the retry runs only steps 11-12 and ends where the single worker ended (same examples per
    step, split over two workers; FSDP2 gathers the saved state and shards it back)."""
    paths, cell = prepared
    one = fit_cell(cell, _fresh_copy(paths, tmp_path / "one"), _resources(1))
    study = _fresh_copy(paths, tmp_path / "two")
    records = tmp_path / "records"
    records.mkdir()
    loop = failing_train_loop(fail_at_call=PER_EPOCH + 1, records=records)
    with pytest.raises(Exception, match="injected failure at optimizer step 11"):
        fit_cell(cell, study, _resources(2, sharding="fsdp"), loop_per_worker=loop)
    two = fit_cell(cell, study, _resources(2, sharding="fsdp"), loop_per_worker=loop)
    for rank in (0, 1):
        first, second = (len((records / f"calls-{rank}-{a}").read_text().splitlines()) for a in (0, 1))
        assert (first, second) == (PER_EPOCH + 1, STEPS - PER_EPOCH)  # resumed at step 10, not 0
    assert one.train_steps == two.train_steps == STEPS
    assert two.train_tokens == one.train_tokens
    print(f"final loss: one worker {one.final_loss!r}, two FSDP2 workers resumed {two.final_loss!r}")
    assert two.final_loss == pytest.approx(one.final_loss, rel=1e-5)
    assert two.student_params == one.student_params  # evaluated unsharded


def test_a_trial_larger_than_the_cluster_is_refused_and_an_autoscaling_one_warned(capsys):
    from study.run.launch import ClusterTooSmall, check_trial_fits

    cluster = {"CPU": 2.0}
    check_trial_fits(_resources(2), cluster, autoscaling=False)  # fits exactly
    with pytest.raises(ClusterTooSmall, match=r"3 CPUs \(workers_per_trial=3 x cpus_per_worker=1\).*2 CPUs"):
        check_trial_fits(_resources(3), cluster, autoscaling=False)
    with pytest.raises(ClusterTooSmall, match=r"2 GPUs .* 0 GPUs"):
        check_trial_fits(_resources(2, gpus_per_worker=1), cluster, autoscaling=False)
    check_trial_fits(_resources(3), cluster, autoscaling=True)
    assert "trials wait until the autoscaler adds nodes" in capsys.readouterr().out


def test_run_refuses_more_workers_than_the_local_cluster_has(tmp_path, ray_local, capsys):
    from conftest import write_spec

    from study.run.cli import main

    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", name="too-big",
                                                         resources={"workers_per_trial": 3}))
    assert main(["run", str(spec)]) == 2
    error = capsys.readouterr().err
    assert "error: resources: one trial needs 3 CPUs (workers_per_trial=3" in error and "2 CPUs" in error
    assert not list((tmp_path / "out" / "too-big").glob("corpora/*.parquet"))  # nothing built or trained
