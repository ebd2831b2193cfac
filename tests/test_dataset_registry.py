"""The data-set registry: every registered data set has all its parts, every data-set module is
registered, and the spec, the teacher prompts and the released-file importer read the registry."""

import importlib
import pkgutil
from typing import get_args

import pytest
from conftest import small_spec

import study.core.datasets as datasets_package
from study.core.datasets import DATASET_NAMES, DATASETS, REGISTRY, AnswerType, DatasetSpec, score
from study.core.datasets.descriptor import CHOICE, MATH, NUMBER, YES_NO, DatasetInfo
from study.core.datasets.registry import _release_aliases
from study.core.prompts import load_library
from study.core.spec import SpecError, StudySpec, parse_spec
from study.teachers.released import parse_release_name

# one gold answer per answer kind, and a teacher output that gives it
SAMPLE_ANSWERS = {"number": ("12", "so 7 + 5 = 12. The answer is 12"), "choice": ("B", "The answer is (B)"),
                  "yes_no": ("no", "The answer is no."), "math": ("\\frac{1}{2}", "so \\boxed{\\frac12}")}


def _data_set_modules() -> dict[str, object]:
    modules = {}
    for info in pkgutil.iter_modules(datasets_package.__path__):
        module = importlib.import_module(f"study.core.datasets.{info.name}")
        if isinstance(getattr(module, "DATASET", None), DatasetInfo):
            modules[info.name] = module
    return modules


def test_every_data_set_module_is_registered_once_under_its_own_name():
    modules = _data_set_modules()
    assert sorted(modules) == sorted(DATASET_NAMES)
    assert [module.DATASET for module in modules.values()] == [REGISTRY[name] for name in modules]
    assert len(set(DATASET_NAMES)) == len(DATASETS)


@pytest.mark.parametrize("dataset", DATASETS, ids=lambda d: d.name)
def test_every_registered_data_set_has_all_its_parts(dataset):
    assert dataset.answers in (NUMBER, CHOICE, YES_NO, MATH)
    assert dataset.answer_type in get_args(AnswerType)
    assert "{question}" in dataset.prompt_template
    gold, output = SAMPLE_ANSWERS[dataset.answer_type]
    assert score(dataset.name, output, gold) and not score(dataset.name, "I cannot tell.", gold)
    assert all(alias == alias.lower() and "_" not in alias for alias in dataset.release_names)
    if dataset.generated:
        return
    source = dataset.source
    assert callable(source.parse) and source.train_names
    assert source.test_names or source.divide is not None, "a source without a test file needs a split rule"
    assert source.hub_id and source.hub_configs and len(source.hub_splits) == 2
    assert dataset.release_names, "a data set read from files is named somehow in released CoT files"


def test_the_spec_accepts_exactly_the_registered_names(tmp_path):
    for name in DATASET_NAMES:
        assert DatasetSpec(name=name).name == name
    schema = StudySpec.model_json_schema()["$defs"]["DatasetSpec"]["properties"]["name"]
    assert schema["enum"] == list(DATASET_NAMES)
    with pytest.raises(SpecError, match=r"datasets\[0\]\.name: .*'strategyqa'.*\(got 'svamp2'\)"):
        parse_spec(small_spec(tmp_path, datasets=[{"name": "svamp2"}]))


def test_released_file_names_come_from_the_registry():
    for dataset in DATASETS:
        for alias in dataset.release_names:
            assert parse_release_name(f"{alias.upper()}_ChatGPT_level3_ranked.json").dataset == dataset.name
    with pytest.raises(ValueError, match="'svamp' is claimed by both 'svamp' and 'gsm8k'"):
        _release_aliases((REGISTRY["svamp"], DatasetInfo("gsm8k", NUMBER, REGISTRY["gsm8k"].source, ("svamp",))))


def test_the_teacher_prompts_cover_every_registered_answer_type():
    answer_prompts = load_library()["answer"]
    assert {dataset.answer_type for dataset in DATASETS} <= set(answer_prompts)
