"""`arith`: seeded synthetic multi-step arithmetic word problems with structured solutions.

A problem is a short story: someone starts with a number of things, then 2-3 (configurable)
events add, remove, multiply or share them; the question asks how many are left. Every operand
and every intermediate result lies in 0..max_value, so the whole-number vocabulary stays small.
The same settings always give the same problems and the same train/test split: the first
`n_train` distinct problems are train, the next `n_test` test. It reads no files; its settings are
the spec's `DatasetSpec.arith`. Each problem carries its structured solution (`steps`), which the
program teacher renders; the human rationale is the solution as one equation.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pydantic import Field, model_validator

from study.core.datasets.descriptor import NUMBER, DatasetInfo, Splits
from study.core.datasets.problems import OPERATOR_SYMBOLS, Problem, Step
from study.core.datasets.settings import Frozen, Seed

SUBJECTS = (("Tom", "he"), ("Anna", "she"), ("Ravi", "he"), ("Mia", "she"), ("Omar", "he"),
            ("Lena", "she"), ("Ken", "he"), ("Sara", "she"), ("Ivan", "he"), ("Zoe", "she"))
ITEMS = ("apples", "marbles", "stickers", "books", "coins", "cards", "pencils", "shells", "stamps", "cookies")
MAX_TRIES = 200
MAX_DUPLICATES_IN_A_ROW = 2000
MAX_PROBLEMS = 100_000


class ArithSettings(Frozen):
    """How the synthetic `arith` word problems are generated (fixed by `seed`)."""

    seed: Seed = Field(0, description="Seed of the generator; fixes problems and the split.")
    # Bounded: the generator makes ~10,000 problems a second, and holds them all in memory.
    n_train: int = Field(600, gt=0, le=MAX_PROBLEMS, description="Training problems (at most 100,000).")
    n_test: int = Field(200, gt=0, le=MAX_PROBLEMS, description="Test problems (at most 100,000).")
    ops_min: int = Field(2, ge=1, le=8, description="Fewest operations per problem.")
    ops_max: int = Field(3, ge=1, le=8, description="Most operations per problem.")
    max_value: int = Field(40, ge=5, le=999, description="Every operand and intermediate result lies in 0..max_value.")

    @model_validator(mode="after")
    def _ops_ordered(self) -> ArithSettings:
        if self.ops_min > self.ops_max:
            raise ValueError(f"ops_min ({self.ops_min}) must not exceed ops_max ({self.ops_max})")
        return self


def _add(rng: random.Random, value: int, limit: int) -> Step | None:
    if value >= limit:
        return None
    amount = rng.randint(1, limit - value)
    event = rng.choice(("buys {n} more", "finds {n} more", "gets {n} more from a friend"))
    return Step(value, "add", amount, value + amount, event.format(n=amount), "getting more means adding")


def _sub(rng: random.Random, value: int, limit: int) -> Step | None:
    if value < 1:
        return None
    amount = rng.randint(1, value)
    event = rng.choice(("gives away {n}", "loses {n}", "uses {n}"))
    return Step(value, "sub", amount, value - amount, event.format(n=amount), "losing some means subtracting")


def _mul(rng: random.Random, value: int, limit: int) -> Step | None:
    factors = [k for k in (2, 3, 4) if 0 < value * k <= limit]
    if not factors:
        return None
    factor = rng.choice(factors)
    event = f"ends up with {factor} times as many"
    return Step(value, "mul", factor, value * factor, event, f"{factor} times as many means multiplying by {factor}")


def _div(rng: random.Random, value: int, limit: int) -> Step | None:
    divisors = [k for k in (2, 3, 4, 5) if value >= k and value % k == 0]
    if not divisors:
        return None
    divisor = rng.choice(divisors)
    event = f"splits them into {divisor} equal piles and keeps one pile"
    return Step(value, "div", divisor, value // divisor, event, f"one of {divisor} equal piles means dividing by {divisor}")


OPERATIONS: tuple[Callable[[random.Random, int, int], Step | None], ...] = (_add, _sub, _mul, _div)


def _solution(rng: random.Random, start: int, n_ops: int, limit: int) -> tuple[Step, ...] | None:
    steps: list[Step] = []
    value = start
    for _ in range(n_ops):
        step = rng.choice(OPERATIONS)(rng, value, limit)
        if step is None:
            return None
        steps.append(step)
        value = step.result
    return tuple(steps)


def _story(subject: str, pronoun: str, item: str, start: int, steps: tuple[Step, ...]) -> str:
    events = [f"{'Then ' + pronoun if index else pronoun.capitalize()} {step.event}." for index, step in enumerate(steps)]
    return " ".join([f"{subject} has {start} {item}.", *events, f"How many {item} does {subject} have now?"])


def _human_rationale(start: int, steps: tuple[Step, ...]) -> str:
    expression = str(start)
    for step in steps:
        expression = f"( {expression} {OPERATOR_SYMBOLS[step.op]} {step.right} )"
    return f"{expression[2:-2]} = {steps[-1].result}" if steps else f"{start}"


def make_problem(rng: random.Random, settings: ArithSettings, uid: str) -> Problem:
    for _ in range(MAX_TRIES):
        subject, pronoun = rng.choice(SUBJECTS)
        item = rng.choice(ITEMS)
        start = rng.randint(2, settings.max_value)
        n_ops = rng.randint(settings.ops_min, settings.ops_max)
        steps = _solution(rng, start, n_ops, settings.max_value)
        if steps is not None:
            return Problem(
                uid=uid,
                question=_story(subject, pronoun, item, start, steps),
                answer=str(steps[-1].result),
                steps=steps,
                subject=subject,
                item=item,
                human_rationale=_human_rationale(start, steps),
            )
    raise RuntimeError(f"arith: no problem with these settings after {MAX_TRIES} tries: {settings}")


def generate_splits(settings: ArithSettings) -> Splits:
    """Unique problems from the seed; the first n_train are train, the next n_test are test."""
    rng = random.Random(settings.seed)
    wanted = settings.n_train + settings.n_test
    seen: set[str] = set()
    problems: list[Problem] = []
    duplicates_in_a_row = 0
    while len(problems) < wanted:
        problem = make_problem(rng, settings, uid=f"arith-{len(problems)}")
        if problem.question in seen:
            duplicates_in_a_row += 1
            if duplicates_in_a_row > MAX_DUPLICATES_IN_A_ROW:
                raise ValueError(
                    f"arith: found only {len(problems)} distinct problems, n_train + n_test = {wanted}; "
                    "raise max_value or the number of operations"
                )
            continue
        duplicates_in_a_row = 0
        seen.add(problem.question)
        problems.append(problem)
    return {"train": problems[: settings.n_train], "test": problems[settings.n_train :]}


# generated, so no `source`; no paper released CoT for it, so no release names
DATASET = DatasetInfo(name="arith", answers=NUMBER, source=None)
