"""A checkpoint holds the trained weights, the optimizer and scheduler and the typed counters, and
reads back as it was saved (the counters as a plain dict in the file)."""

import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trainables import checkpoints
from trainables.checkpoints import Counters
from trainables.step import TargetLoss

CONFIG = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=2)


def _trained(seed: int) -> tuple[TargetLoss, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    loss_module = TargetLoss(LlamaForCausalLM(CONFIG))
    optimizer = torch.optim.AdamW(loss_module.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    batch = {"input_ids": torch.randint(0, 50, (2, 6)), "target_ids": torch.randint(0, 50, (2, 6))}
    loss_module(batch).backward()
    optimizer.step()
    scheduler.step()
    return loss_module, optimizer, scheduler


def test_a_saved_state_reads_back_and_loads_into_a_fresh_module(tmp_path):
    loss_module, optimizer, scheduler = _trained(seed=0)
    counters = Counters(step=3, train_tokens=120, train_s=1.5, train_flops=2e6, loss=2.25)
    state = checkpoints.gather(loss_module, optimizer, scheduler, counters)
    counters.step = 4  # training goes on counting: the gathered state keeps its own copy
    checkpoints.save(state, tmp_path)
    assert isinstance(torch.load(tmp_path / checkpoints.STATE_FILE, weights_only=False)["counters"], dict)
    read = checkpoints.read(tmp_path)
    assert read.counters == Counters(step=3, train_tokens=120, train_s=1.5, train_flops=2e6, loss=2.25)
    fresh, fresh_optimizer, fresh_scheduler = _trained(seed=1)
    checkpoints.load(read, fresh, fresh_optimizer, fresh_scheduler)
    for (name, expected), (_, got) in zip(loss_module.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=name)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()


def test_a_checkpoint_without_its_optimizer_file_loads_the_weights_and_leaves_the_optimizer_fresh(tmp_path):
    """A finished cell's checkpoint, after trainables/cell.py deleted its optimizer state: the
    trained weights still load (a re-evaluation needs nothing else); AdamW starts empty."""
    loss_module, optimizer, scheduler = _trained(seed=0)
    checkpoints.save(checkpoints.gather(loss_module, optimizer, scheduler, Counters(step=6)), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoints.OPTIMIZER_FILE, checkpoints.STATE_FILE]
    (tmp_path / checkpoints.OPTIMIZER_FILE).unlink()
    read = checkpoints.read(tmp_path)
    assert read.optimizer is None and read.counters.step == 6
    fresh, fresh_optimizer, fresh_scheduler = _trained(seed=1)
    fresh_optimizer.state.clear()
    checkpoints.load(read, fresh, fresh_optimizer, fresh_scheduler)
    torch.testing.assert_close(fresh.state_dict(), loss_module.state_dict(), rtol=0, atol=0)
    assert not fresh_optimizer.state


def test_deleting_a_finished_cells_optimizer_state_keeps_its_student(tmp_path):
    from study.core.storage import StudyPaths
    from trainables.cell import delete_optimizer_state

    paths = StudyPaths(str(tmp_path))
    checkpoint = tmp_path / "cells" / "abc" / "train" / "checkpoint_2026-01-01_00-00-00.000000"
    checkpoint.mkdir(parents=True)
    for name in (checkpoints.STATE_FILE, checkpoints.OPTIMIZER_FILE):
        (checkpoint / name).write_bytes(b"x")
    assert delete_optimizer_state(paths, "abc") == [str(checkpoint / checkpoints.OPTIMIZER_FILE)]
    assert [p.name for p in checkpoint.iterdir()] == [checkpoints.STATE_FILE]
    assert delete_optimizer_state(paths, "abc") == [] and delete_optimizer_state(paths, "other") == []


def test_fresh_counters_start_at_zero_with_no_loss_yet():
    fresh = Counters()
    assert (fresh.step, fresh.train_tokens, fresh.train_s, fresh.train_flops) == (0, 0, 0.0, 0.0)
    assert math.isnan(fresh.loss)


def test_each_roles_folder_keeps_the_optimizer_split_and_loses_it_once_the_cell_finished(tmp_path):
    """A two-model cell's checkpoint while its second role trains: the finished role's folder
    holds its weights alone, the training role's both files; once the result is written, every
    role's optimizer file is deleted and both students stay."""
    from study.core.storage import StudyPaths
    from trainables.cell import delete_optimizer_state

    paths = StudyPaths(str(tmp_path))
    checkpoint = tmp_path / "cells" / "abc" / "train" / "checkpoint_2026-01-01_00-00-00.000000"
    checkpoint.mkdir(parents=True)
    decomposer = checkpoints.gather(*_trained(seed=0), Counters(step=4))
    solver = checkpoints.gather(*_trained(seed=1), Counters(step=2))
    checkpoints.save_roles({"decomposer": checkpoints.finished(decomposer, keep_weights=True), "solver": solver},
                           checkpoint)
    assert sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*.pt")) == [
        f"decomposer/{checkpoints.STATE_FILE}", f"solver/{checkpoints.OPTIMIZER_FILE}", f"solver/{checkpoints.STATE_FILE}"]
    read = checkpoints.read_roles(checkpoint)
    assert read["decomposer"].optimizer is None and read["decomposer"].counters.step == 4
    assert read["solver"].optimizer.keys() == solver.optimizer.keys() and read["solver"].counters.step == 2
    solver_file = checkpoint / "solver" / checkpoints.OPTIMIZER_FILE
    assert delete_optimizer_state(paths, "abc") == [str(solver_file)]
    kept = checkpoints.read_roles(checkpoint)
    assert sorted(kept) == ["decomposer", "solver"] and all(state.optimizer is None for state in kept.values())
    torch.testing.assert_close(kept["solver"].model, solver.model, rtol=0, atol=0)
