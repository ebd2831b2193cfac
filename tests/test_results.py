import pytest
from conftest import small_spec

from study.core.cells import expand_grid
from study.core.results import CellResult, Measurements
from study.core.spec import ResourcesSpec, parse_spec

MEASURED = Measurements(student_params=10, accuracy=0.5, n_test=4, n_correct=2, n_unextractable=1,
                        mean_generated_tokens=3.0, train_tokens=100, train_steps=2, train_s=10.0, tokens_per_s=10.0,
                        final_loss=1.0, dropped_examples=0, eval_s=2.0, teacher_accuracy=1.0,
                        mean_rationale_tokens=7.0)


def test_result_row_carries_the_cell_and_gpu_seconds(tmp_path):
    cell = expand_grid(parse_spec(small_spec(tmp_path)))[0]
    on_gpus = CellResult.describe(cell, MEASURED, ResourcesSpec(workers_per_trial=2, gpus_per_worker=1))
    assert on_gpus.gpu_s == pytest.approx(10.0 * 2 + 2.0)
    on_cpu = CellResult.describe(cell, MEASURED, ResourcesSpec())
    assert on_cpu.gpu_s == 0.0
    assert (on_cpu.cell_id, on_cpu.granularity, on_cpu.teacher, on_cpu.format) == (cell.cell_id, 3, "program", "cot")
    assert {"torch", "ray", "transformers", "cotstudy"} <= set(on_cpu.versions)
