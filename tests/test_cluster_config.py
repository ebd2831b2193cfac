"""cluster.yaml passes Ray's own cluster-launcher validation (schema and defaults, no AWS calls)."""

import copy

import ray
import yaml
from conftest import REPO
from ray.autoscaler._private.util import prepare_config, validate_config


def _cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validation():
    prepared = prepare_config(_cluster_config())  # merged with Ray's AWS defaults.yaml
    validate_config(prepared)  # ray-schema.json, plus min/max worker and head-type checks
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and "GPU" not in types["head"]["resources"]
    gpus = {name: t["resources"].get("GPU", 0) for name, t in types.items()}
    assert gpus == {"head": 0, "gpu-1x": 1, "gpu-8x": 8}
    for name in ("gpu-1x", "gpu-8x"):
        assert types[name]["min_workers"] == 0 < types[name]["max_workers"], "GPU nodes autoscale from zero"


def test_cluster_installs_this_project_with_the_gpu_extra_on_the_pinned_ray():
    config = _cluster_config()
    assert any('cotstudy[gpu]"' in command and "pip install" in command for command in config["setup_commands"])
    assert config["file_mounts"]["~/cotstudy"] == "."
    major_minor = ".".join(ray.__version__.split(".")[:2])
    for image in (config["docker"]["head_image"], config["docker"]["worker_image"]):
        assert image.startswith(f"rayproject/ray:{major_minor}") and "py311" in image


def test_rays_validation_would_catch_a_broken_config():
    """The check above is not vacuous: the same call rejects a typo'd key and a bad head type."""
    import jsonschema
    import pytest

    typo = copy.deepcopy(_cluster_config())
    typo["available_node_types"]["gpu-1x"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(typo))
    wrong_head = copy.deepcopy(_cluster_config())
    wrong_head["head_node_type"] = "cpu-head"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(wrong_head))


def test_trial_drivers_ask_for_the_driver_resource_that_only_the_head_declares():
    from study.run.launch import DRIVER_RESOURCE, _trainable_with_resources
    from study.core.spec import ResourcesSpec
    from trainables.cell import run_cell

    request = _trainable_with_resources(run_cell, ResourcesSpec())._resources.required_resources
    assert request.get(DRIVER_RESOURCE, 0) > 0 and request.get("CPU", 0) == 0
    in_trial = ResourcesSpec(engine="in_trial", cpus_per_worker=2)
    request = _trainable_with_resources(run_cell, in_trial)._resources.required_resources
    assert request.get(DRIVER_RESOURCE, 0) == 0 and request["CPU"] == 2, "an in_trial cell runs on any node"
    types = prepare_config(_cluster_config())["available_node_types"]
    assert {name for name, t in types.items() if DRIVER_RESOURCE in t["resources"]} == {"head"}
