"""Training state as full (unsharded) tensors, whatever the layout: one worker, DDP or FSDP2.

`gather` is collective (every worker calls it; rank 0 receives the tensors, on the CPU), `load`
gives each worker its part of a saved state. A cell that trains several models (a method's roles)
checkpoints one state per role, in a folder each (`save_roles`: `checkpoint_*/<role>/`). A role's
state is two files: `trainer_state.pt` (the trained weights, scheduler and counters) and
`optimizer_state.pt` (AdamW's moments: twice the weights), which trainables/cell.py deletes from
every role's folder once the cell's result is written; a role that has finished training is
checkpointed without it (`finished`), so the final checkpoint keeps the students alone. A state
without it can only finish a run whose training is done, which `train._resume` checks. The
parameter names are those of the loss module
(`student.` + the student's own), the same under every layout, so a run may resume with another
number of workers or another sharding. A LoRA run keeps only the adapter weights: the base weights
never change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from study.core.storage import OPTIMIZER_STATE_FILE

STATE_FILE = "trainer_state.pt"
OPTIMIZER_FILE = OPTIMIZER_STATE_FILE
FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass
class Counters:
    """How far training got: saved in every checkpoint, so a resumed run goes on from them."""

    step: int = 0  # optimizer steps done
    train_tokens: int = 0  # tokens of the examples trained on (prompt and target, no padding), all workers
    train_s: float = 0.0  # training time, taken at epoch ends and the end (a resumed run adds to the saved)
    train_flops: float = 0.0  # model FLOPs of those steps, all workers (trainables/accounting.py)
    loss: float = float("nan")  # the last step's loss per target token

    @classmethod
    def total(cls, parts: list[Counters]) -> Counters:
        """The counters of a cell that trains several models (roles): sums, and the mean of their
        last losses."""
        return cls(step=sum(p.step for p in parts), train_tokens=sum(p.train_tokens for p in parts),
                   train_s=sum(p.train_s for p in parts), train_flops=sum(p.train_flops for p in parts),
                   loss=sum(p.loss for p in parts) / len(parts))


@dataclass
class TrainingState:
    model: dict[str, torch.Tensor]  # trained parameters (only the adapters under LoRA)
    optimizer: dict | None  # None: deleted after the cell finished (trainables/cell.py)
    scheduler: dict
    counters: Counters


def has_frozen_parameters(loss_module: torch.nn.Module) -> bool:
    return any(not parameter.requires_grad for parameter in loss_module.parameters())


def gather(loss_module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, counters: Counters) -> TrainingState:
    """Collective: the full state on rank 0 (other ranks get empty tensors dicts)."""
    model = get_model_state_dict(loss_module, options=FULL_ON_RANK0)
    if has_frozen_parameters(loss_module):
        trained = {name for name, parameter in loss_module.named_parameters() if parameter.requires_grad}
        model = {name: tensor for name, tensor in model.items() if name in trained}
    return TrainingState(
        model=model,
        optimizer=get_optimizer_state_dict(loss_module, optimizer, options=FULL_ON_RANK0),
        scheduler=scheduler.state_dict(),
        counters=replace(counters),  # a copy: training goes on counting
    )


def save(state: TrainingState, directory: Path) -> None:
    """The counters are saved as a plain dict: a checkpoint holds no class of this package."""
    torch.save({"model": state.model, "scheduler": state.scheduler, "counters": asdict(state.counters)},
               Path(directory) / STATE_FILE)
    if state.optimizer is not None:  # None: a finished role's, or deleted once the cell finished
        torch.save(state.optimizer, Path(directory) / OPTIMIZER_FILE)


def read(directory: Path) -> TrainingState:
    saved = torch.load(Path(directory) / STATE_FILE, weights_only=False, map_location="cpu")
    if "optimizer" in saved:  # a checkpoint written before the optimizer had a file of its own
        optimizer = saved["optimizer"]
    elif (Path(directory) / OPTIMIZER_FILE).exists():
        optimizer = torch.load(Path(directory) / OPTIMIZER_FILE, weights_only=False, map_location="cpu")
    else:
        optimizer = None
    return TrainingState(model=saved["model"], optimizer=optimizer, scheduler=saved["scheduler"],
                         counters=Counters(**saved["counters"]))


def save_roles(states: dict[str, TrainingState], directory: Path) -> None:
    """One state per role (the models a cell trains), each in its own folder `<role>/`."""
    for role, state in states.items():
        (Path(directory) / role).mkdir()
        save(state, Path(directory) / role)


def read_roles(directory: Path) -> dict[str, TrainingState]:
    """The states `save_roles` wrote, by role (a checkpoint from before roles has none: its cell
    trains again from step 0, to the same result)."""
    return {folder.name: read(folder) for folder in sorted(Path(directory).iterdir())
            if (folder / STATE_FILE).is_file()}


def finished(state: TrainingState, keep_weights: bool) -> TrainingState:
    """A role's final state as kept while later roles train: its weights (on the rank that
    evaluates and checkpoints) and counters; no optimizer (no file), since it never trains again."""
    return TrainingState(model=state.model if keep_weights else {}, optimizer=None, scheduler={},
                         counters=state.counters)


def _full_state_options(loss_module: torch.nn.Module) -> StateDictOptions:
    """A full state, all of it expected, but for a LoRA run's frozen weights (never saved)."""
    return StateDictOptions(full_state_dict=True, strict=not has_frozen_parameters(loss_module))


def load_model(state: TrainingState, loss_module: torch.nn.Module) -> None:
    """The trained weights into `loss_module`, sharded (each rank takes its shard) or plain."""
    # a copy: for a partial load, set_model_state_dict fills the missing names into the dict it gets
    loaded = set_model_state_dict(loss_module, dict(state.model), options=_full_state_options(loss_module))
    if loaded.unexpected_keys:  # a partial (LoRA) load is not strict: every saved name must still fit
        raise RuntimeError(f"trained state does not fit the student: {loaded.unexpected_keys[:5]}")


def load(state: TrainingState, loss_module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> None:
    """Every rank, with the full state read from the checkpoint: each takes its own shard. A state
    without optimizer moments (a finished cell's) leaves the optimizer fresh."""
    load_model(state, loss_module)
    if state.optimizer is not None:
        set_optimizer_state_dict(loss_module, optimizer, state.optimizer, options=_full_state_options(loss_module))
    scheduler.load_state_dict(state.scheduler)
