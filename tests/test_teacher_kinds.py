"""Teacher kinds: every kind the spec accepts has a kind object, each kind's facts name its own
fields, and reading the kinds loads no Ray (so `cotstudy plan` and `status` stay fast)."""

import subprocess
import sys
import typing

from study.core.spec import TeacherSpec
from study.teachers.kind import TeacherKind
from study.teachers.registry import KINDS


def _spec_kinds() -> tuple[type, ...]:
    union, _discriminator = typing.get_args(TeacherSpec)
    return typing.get_args(union)


def test_every_teacher_kind_of_the_spec_has_one_registry_entry():
    assert set(KINDS) == set(_spec_kinds())
    assert all(isinstance(kind, TeacherKind) for kind in KINDS.values())
    assert len({id(kind) for kind in KINDS.values()}) == len(KINDS)


def test_operational_fields_are_fields_of_their_kind():
    for model in _spec_kinds():
        assert model.operational_fields <= set(model.model_fields), model.__name__
        assert "name" not in model.operational_fields and "kind" not in model.operational_fields


def test_reading_the_kinds_loads_neither_ray_nor_torch():
    code = ("import sys, study.run.cli, study.teachers.registry; "
            "print(sorted(m for m in ('ray', 'torch', 'transformers') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
