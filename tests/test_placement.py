"""Placement on a cluster, without Ray: node types read from cluster.yaml (or the autoscaler's own
copy on the head), which of them one trial's Train workers fit and why not, how many trials run at
once, storage a multi-node cluster can share, and the host a served teacher's URL names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, small_spec, write_spec

from study.core.cluster import (
    AUTOSCALER_CONFIG,
    GIB,
    ClusterConfigError,
    fits,
    load_cluster,
    parse_cluster,
    placement,
)
from study.core.spec import ResourcesSpec, load_spec
from study.run.cli import _parser, main
from study.run.launch import ClusterTooSmall, check_storage_is_shared, known_cluster, max_concurrent
from study.teachers.endpoint import ServeHost, serve_host

CLUSTER = load_cluster(REPO / "cluster.yaml")
ONE_GPU = {"CPU": 4, "GPU": 1}


def _cluster_file(path: Path, **node_types: dict) -> Path:
    """A launcher config with a CPU head and the given worker node types."""
    types = {"head": {"resources": {"CPU": 8, "cotstudy_driver": 1}, "node_config": {"InstanceType": "m6i.2xlarge"}},
             **node_types}
    path.write_text(yaml.safe_dump({"head_node_type": "head", "available_node_types": types}))
    return path


def test_cluster_yaml_reads_as_typed_node_types():
    head, one, eight = (CLUSTER.node_type(name) for name in ("head", "gpu-1x", "gpu-8x"))
    assert (head.cpus, head.gpus, head.head, head.custom_resources) == (8, 0, True, {"cotstudy_driver": 1})
    assert (one.cpus, one.gpus, one.max_workers, one.instance_type) == (4, 1, 8, "g5.xlarge")
    assert (eight.cpus, eight.gpus, eight.max_workers, eight.instance_type) == (96, 8, 2, "p4de.24xlarge")
    assert CLUSTER.max_workers == 10 and one.memory_bytes is None  # the file declares no memory


def test_a_worker_fits_a_node_type_or_the_reason_names_what_is_short():
    one_gpu_node = CLUSTER.node_type("gpu-1x")
    assert fits(ONE_GPU, one_gpu_node) is None
    assert fits({"CPU": 8, "GPU": 1}, one_gpu_node) == "8 CPUs per worker, the type has 4 CPUs"
    assert fits({"CPU": 1, "GPU": 1}, CLUSTER.node_type("head")) == "1 GPUs per worker, the type has 0 GPUs"
    assert fits({"CPU": 1, "GPU": 0, "memory": 8 * GIB}, one_gpu_node) == "memory (the type does not declare its memory)"
    assert fits({"CPU": 4 / 3, "GPU": 0}, one_gpu_node) is None  # 3 x 4/3 CPU despite rounding


def test_trials_at_once_count_every_node_the_autoscaler_may_start():
    # 8 g5.xlarge x 1 worker + 2 p4de x 8 workers; the head has no GPU
    assert placement(ONE_GPU, 1, CLUSTER).trials_at_once == 24
    assert placement(ONE_GPU, 2, CLUSTER).trials_at_once == 12  # a trial's workers may span nodes
    capped = parse_cluster({**yaml.safe_load((REPO / "cluster.yaml").read_text()), "max_workers": 3}, "capped")
    assert placement(ONE_GPU, 1, capped).trials_at_once == 8 + 8 + 1  # the roomiest three nodes
    # CPU-only workers of 8 CPUs: one on the head, none on a 4-CPU gpu-1x, 12 on each gpu-8x
    assert placement({"CPU": 8, "GPU": 0}, 1, CLUSTER).trials_at_once == 1 + 2 * 12


def test_every_shipped_spec_fits_the_shipped_cluster_and_gpu_specs_fit_its_one_gpu_nodes():
    for path in sorted((REPO / "specs").glob("*.yaml")):
        resources = load_spec(path).resources
        fitted = placement(resources.per_worker, resources.workers_per_trial, CLUSTER)
        assert fitted.refusal() is None, path.name
        if resources.gpus_per_worker:
            assert fitted.why_not["gpu-1x"] is None, f"{path.name}: {fitted.why_not['gpu-1x']}"


def test_a_spec_no_node_type_fits_is_refused_naming_each_types_reason(tmp_path):
    cluster = load_cluster(_cluster_file(tmp_path / "c.yaml", **{"gpu-1x": {
        "resources": {"CPU": 4, "GPU": 1}, "max_workers": 4, "node_config": {"InstanceType": "g5.xlarge"}}}))
    refusal = placement({"CPU": 8, "GPU": 1}, 1, cluster).refusal()
    assert refusal.startswith(f"{tmp_path / 'c.yaml'}: no node type fits one Train worker")
    assert "head: 1 GPUs per worker, the type has 0 GPUs" in refusal
    assert "gpu-1x: 8 CPUs per worker, the type has 4 CPUs" in refusal
    too_many = placement(ONE_GPU, 5, cluster).refusal()
    assert "needs 5 Train workers" in too_many and "raise max_workers" in too_many


def test_cluster_config_errors_name_the_file_and_the_field(tmp_path):
    with pytest.raises(ClusterConfigError, match=r"absent.yaml: no such cluster config"):
        load_cluster(tmp_path / "absent.yaml")
    no_cpus = _cluster_file(tmp_path / "no-cpus.yaml", gpu={"resources": {"GPU": 1}, "max_workers": 2})
    with pytest.raises(ClusterConfigError, match=r"no-cpus.yaml: available_node_types.gpu.resources.CPU: not given"):
        load_cluster(no_cpus)
    negative = _cluster_file(tmp_path / "negative.yaml", gpu={"resources": {"CPU": 4}, "max_workers": -1})
    with pytest.raises(ClusterConfigError, match=r"available_node_types.gpu: max_workers: .*greater than or equal to 0"):
        load_cluster(negative)
    (tmp_path / "not-a-cluster.yaml").write_text("name: demo\n")
    with pytest.raises(ClusterConfigError, match="available_node_types: missing"):
        load_cluster(tmp_path / "not-a-cluster.yaml")


def test_on_a_cluster_the_autoscalers_own_config_on_the_head_is_read(tmp_path, monkeypatch):
    """`ray up` leaves the config on the head as JSON, every type's resources filled in (memory in bytes)."""
    bootstrap = {"max_workers": 4, "head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 8, "cotstudy_driver": 1}, "node_config": {"InstanceType": "m6i.2xlarge"}},
        "gpu": {"resources": {"CPU": 4, "GPU": 1, "memory": 11 * GIB, "accelerator_type:A10G": 1},
                "min_workers": 0, "max_workers": 4, "node_config": {"InstanceType": "g5.xlarge"}}}}
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / Path(AUTOSCALER_CONFIG).name).write_text(json.dumps(bootstrap))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert known_cluster(None) is None  # a local Ray: the file is not this cluster's
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    found = known_cluster(None)
    gpu = found.node_type("gpu")
    assert (gpu.memory_bytes, gpu.custom_resources, gpu.max_workers) == (11 * GIB, {"accelerator_type:A10G": 1}, 4)
    assert known_cluster(CLUSTER) is CLUSTER  # --cluster wins


def _resources(**fields: object) -> ResourcesSpec:
    return ResourcesSpec(**fields)


def test_concurrency_is_what_the_cluster_can_place_not_the_heads_cpus():
    head_now = [{"CPU": 8.0, "cotstudy_driver": 1.0, "memory": 20 * GIB}]
    paper = _resources(cpus_per_worker=4, gpus_per_worker=1)
    assert max_concurrent(paper, CLUSTER, head_now, joined=True)[0] == 24
    limit, why = max_concurrent(paper, None, head_now, joined=True)  # no config: the cluster as it is now
    assert limit == 1 and "no cluster config known" in why
    two_gpu_nodes = head_now + [{"CPU": 4.0, "GPU": 1.0}] * 2
    assert max_concurrent(paper, None, two_gpu_nodes, joined=True)[0] == 2
    assert max_concurrent(_resources(cpus_per_worker=4, gpus_per_worker=1, max_concurrent_trials=3), CLUSTER,
                          head_now, joined=True) == (3, "resources.max_concurrent_trials")
    # a local 2-core Ray and the demo's 1 CPU per worker: 2 trials at once, as before
    demo = load_spec(REPO / "specs" / "demo.yaml").resources
    assert max_concurrent(demo, None, [{"CPU": 2.0, "cotstudy_driver": 1.0}], joined=False)[0] == 2
    assert max_concurrent(_resources(workers_per_trial=2), None, [{"CPU": 2.0}], joined=False)[0] == 1
    assert max_concurrent(demo, CLUSTER, [{"CPU": 2.0}], joined=False)[0] == 2  # a local Ray is this machine


def test_local_storage_on_a_cluster_of_several_nodes_is_refused():
    with pytest.raises(ClusterTooSmall, match=r"storage: '/data/studies' is a local folder, but the Ray cluster "
                                              r"at RAY_ADDRESS has 2 nodes: give a URI every node reaches"):
        check_storage_is_shared("/data/studies", 2, None)
    with pytest.raises(ClusterTooSmall, match=r"has 1 nodes, and .*cluster.yaml may add more"):
        check_storage_is_shared("./results", 1, CLUSTER)  # only the head is up yet
    check_storage_is_shared("./results", 1, None)  # one node: the folder is its own
    check_storage_is_shared("s3://bucket/studies", 3, CLUSTER)
    check_storage_is_shared("file:///mnt/shared/studies", 3, CLUSTER)  # a mount every node has


def test_a_served_teacher_names_the_nodes_address_on_a_cluster_and_loopback_alone():
    assert serve_host(None, joined_cluster=False, node_address="10.0.0.7") == ServeHost("127.0.0.1", "127.0.0.1")
    assert serve_host(None, joined_cluster=True, node_address="10.0.0.7") == ServeHost("0.0.0.0", "10.0.0.7")
    assert serve_host("teacher.internal", False, "10.0.0.7") == ServeHost("0.0.0.0", "teacher.internal")
    assert serve_host("0.0.0.0", False, "10.0.0.7") == ServeHost("0.0.0.0", "10.0.0.7")  # never a URL of 0.0.0.0
    assert serve_host("localhost", True, "10.0.0.7") == ServeHost("127.0.0.1", "localhost")


def test_serve_teacher_takes_host_and_run_plan_resume_take_cluster():
    parser = _parser()
    assert parser.parse_args(["serve-teacher", "s.yaml", "t", "--host", "10.0.0.7"]).host == "10.0.0.7"
    assert parser.parse_args(["serve-teacher", "s.yaml", "t"]).host is None
    for command in (["run", "s.yaml"], ["plan", "s.yaml"], ["resume", "s3://b/study"]):
        assert parser.parse_args([*command, "--cluster", "cluster.yaml"]).cluster == "cluster.yaml"


def test_plan_with_a_cluster_names_the_node_types_the_workers_fit(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", resources={
        "cpus_per_worker": 4, "gpus_per_worker": 1}))
    assert main(["plan", str(spec), "--cluster", str(REPO / "cluster.yaml")]) == 0
    out = capsys.readouterr().out
    assert "gpu-1x (g5.xlarge: 4 CPUs, 1 GPUs (a10g); up to 8 nodes): fits, 1 worker(s) per node" in out
    assert "head (m6i.2xlarge: 8 CPUs, 0 GPUs; the head): does not fit: 1 GPUs per worker" in out
    assert "trials at once with every node the autoscaler may start: 24" in out


def test_a_spec_no_node_type_fits_exits_2_from_plan_and_run_and_writes_nothing(tmp_path, capsys):
    cluster = _cluster_file(tmp_path / "c.yaml", **{"gpu-1x": {
        "resources": {"CPU": 4, "GPU": 1}, "max_workers": 4, "node_config": {"InstanceType": "g5.xlarge"}}})
    spec = write_spec(tmp_path / "spec.yaml", small_spec(tmp_path / "out", resources={
        "cpus_per_worker": 8, "gpus_per_worker": 1}))
    assert main(["plan", str(spec), "--cluster", str(cluster)]) == 2
    captured = capsys.readouterr()
    assert "gpu-1x (g5.xlarge: 4 CPUs, 1 GPUs; up to 4 nodes): does not fit: 8 CPUs per worker" in captured.out
    assert captured.err.startswith(f"error: {cluster}: no node type fits one Train worker")
    assert main(["run", str(spec), "--cluster", str(cluster)]) == 2  # refused before Ray starts
    assert "no node type fits" in capsys.readouterr().err
    assert main(["run", str(spec), "--cluster", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml: no such cluster config" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
