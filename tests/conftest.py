"""Shared fixtures: small specs written to temporary folders, and one real local Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _shared_data() -> Path | None:
    """The real data of ../shared/data (never copied into the repo): $COTSTUDY_SHARED_DATA, else
    the folder beside the checkout."""
    for candidate in (os.environ.get("COTSTUDY_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if candidate and (Path(candidate) / "svamp" / "SVAMP.json").exists():
            return Path(candidate)
    return None


SHARED_DATA = _shared_data()


@pytest.fixture(autouse=True, scope="session")
def progress_logged_to_stdout():
    """Library calls log their progress (study.core.console) as `cotstudy` does, to stdout, where
    tests read it (capsys); a test calling `main` sets the same again."""
    from study.core.console import configure_logging

    configure_logging(0)


@pytest.fixture
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.skip("../shared/data is not here (set COTSTUDY_SHARED_DATA)")
    return SHARED_DATA


def small_spec(storage: Path, **overrides: object) -> dict:
    """A 2-cell study (L3 cot + answer-only, one 1-layer student) that trains in seconds."""
    spec = {
        "name": "small",
        "storage": str(storage),
        "datasets": [{"name": "arith", "arith": {"n_train": 80, "n_test": 16}}],
        "teachers": [{"kind": "program", "name": "program"}],
        "granularities": [3],
        "formats": ["cot", "answer_only"],
        "students": [{"name": "s", "tiny": {"layers": 1, "width": 32, "heads": 2}}],
        "training": {"max_steps": 6, "tokens_per_batch": 2048, "max_length": 256},
        "evaluation": {"max_new_tokens": 40},
    }
    spec.update(overrides)
    return spec


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the session (2 CPUs, no dashboard)."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from study.run.launch import DRIVER_RESOURCE

    ray.init(num_cpus=2, resources={DRIVER_RESOURCE: 1}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    yield ray
    ray.shutdown()
