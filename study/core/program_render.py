"""The program teacher's renderer: a problem's own structured solution as CoT.

Granularity 1 is one terse sentence; each level adds detail, up to 6 where every step is spelled
out with its reason. The format decides how the reasoning is arranged. Every rendering ends with,
or (answer_first) starts with, the answer convention "The answer is X."

It lives in the core, below both users: the program teacher (study/teachers/program.py, which
serves these renderings) and `method: socratic` (trainables/socratic.py, which trains on the
solution steps rendered as sub-questions, `sub_questions`). Pure text; no server.
"""

from __future__ import annotations

import pandas as pd

from study.core.cells import CorpusKey
from study.core.corpora import answer_sentence, label_rationale, rendered_corpus
from study.core.datasets.problems import OPERATOR_SYMBOLS, Problem, Step, SubQuestion
from study.core.socratic import with_final_answer
from study.core.spec import LABEL_FORMATS, Format

OPERATION_VERBS = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}


def program_model_id(teacher_name: str, granularity: int, fmt: Format) -> str:
    """The program teacher serves one 'model' per rendering style, e.g. 'program/L3/cot'."""
    return f"{teacher_name}/L{granularity}/{fmt}"


def parse_program_model_id(model: str) -> tuple[int, Format]:
    """Inverse of program_model_id; ValueError for a model id it did not make."""
    parts = model.split("/")
    if len(parts) != 3 or not parts[1].startswith("L") or not parts[1][1:].isdigit():
        raise ValueError(f"not a program-teacher model id: '{model}' (expected NAME/L<level>/<format>)")
    return int(parts[1][1:]), parts[2]  # type: ignore[return-value]


def _expression(problem: Problem) -> str:
    """The whole solution as one expression, parenthesised where the order needs it."""
    expression = str(problem.steps[0].left)
    for index, step in enumerate(problem.steps):
        tight = step.op in ("mul", "div") and index > 0 and problem.steps[index - 1].op in ("add", "sub")
        expression = f"({expression})" if tight else expression
        expression = f"{expression} {OPERATOR_SYMBOLS[step.op]} {step.right}"
    return expression


def _step_sentence(problem: Problem, step: Step, level: int, number: int) -> str:
    """One step at granularity 3..6."""
    who, item = problem.subject, problem.item
    if level == 3:
        return f"{who} {step.event}: {step.equation}."
    holds = f"so {who} has {step.equation} {item}."
    if level == 4:
        return f"{who} {step.event}, {holds}"
    reason = f"{step.reason[0].upper()}{step.reason[1:]}, so we {OPERATION_VERBS[step.op]}: {step.equation}."
    if level == 5:
        return f"{who} {step.event}. {reason} Now {who} has {step.result} {item}."
    return f"Step {number}: {who} {step.event}. {reason} After step {number}, {who} has {step.result} {item}."


def reasoning_lines(problem: Problem, level: int) -> list[str]:
    """The reasoning at a granularity level, as a list of sentences (more at higher levels)."""
    who, item, steps = problem.subject, problem.item, problem.steps
    if level == 1:
        return [f"{_expression(problem)} = {problem.answer}."]
    if level == 2:
        return [", ".join(step.equation for step in steps) + "."]
    lines = [_step_sentence(problem, step, level, number) for number, step in enumerate(steps, 1)]
    if level >= 4:
        lines.insert(0, f"{who} starts with {steps[0].left} {item}.")
    if level == 6:
        lines.insert(0, f"We need to find how many {item} {who} has at the end.")
        lines.append(f"After all {len(steps)} steps, {who} has {problem.answer} {item}.")
    return lines


def sub_questions(problem: Problem, level: int) -> tuple[SubQuestion, ...]:
    """Each step as a sub-question with its sub-answer (one sub-question at levels 1-2), the last
    sub-answer closed by the answer sentence: the `bsm` format's content, and the decomposition
    `method: socratic` trains on with this teacher, whatever the cell's format."""
    who, item = problem.subject, problem.item
    if level <= 2:
        steps = [SubQuestion(f"How many {item} does {who} have at the end?", " ".join(reasoning_lines(problem, level)))]
    else:
        steps = [SubQuestion(f"How many {item} does {who} have after {who} {step.event}?",
                             _step_sentence(problem, step, level, number))
                 for number, step in enumerate(problem.steps, 1)]
    return with_final_answer(steps, problem.answer)


def _bsm_text(problem: Problem, level: int) -> str:
    """bsm: the sub-questions, numbered, each followed by its sub-answer."""
    return " ".join(f"Sub-question {number}: {step.question} Sub-answer {number}: {step.answer}"
                    for number, step in enumerate(sub_questions(problem, level), 1))


def _symbolic_lines(problem: Problem, level: int) -> list[str]:
    steps = problem.steps
    if level == 1:
        return [f"x = {_expression(problem)} = {problem.answer}."]
    lines = []
    if level >= 3:
        meaning = f" ({problem.item} {problem.subject} starts with)" if level >= 4 else ""
        lines.append(f"x0 = {steps[0].left}{meaning}.")
    for number, step in enumerate(steps, 1):
        symbol = OPERATOR_SYMBOLS[step.op]
        source = f"x{number - 1}" if level >= 3 else str(step.left)
        why = f" because {problem.subject} {step.event}" if level >= 5 else ""
        lines.append(f"x{number} = {source} {symbol} {step.right} = {step.result}{why}.")
    if level == 6:
        lines.append(f"x{len(steps)} is the number of {problem.item} {problem.subject} has at the end.")
    return lines


def _rephrase(problem: Problem) -> str:
    events = ", then ".join(step.event for step in problem.steps)
    return (f"{problem.subject} starts with {problem.steps[0].left} {problem.item}, then {events}. "
            f"How many {problem.item} does {problem.subject} have in the end?")


def render(problem: Problem, granularity: int | None, fmt: Format) -> str:
    """The teacher's rationale for one problem, at a granularity level and in a format."""
    if fmt in LABEL_FORMATS:
        return label_rationale(problem, fmt)
    answer = answer_sentence(problem.answer)
    if granularity is None:
        raise ValueError(f"format '{fmt}' needs a granularity level 1-6")
    if fmt == "cot":
        return " ".join([*reasoning_lines(problem, granularity), answer])
    if fmt == "answer_first":
        return " ".join([answer, *reasoning_lines(problem, granularity)])
    if fmt == "bsm":
        return _bsm_text(problem, granularity)
    if fmt == "rar":
        reasoning = " ".join(reasoning_lines(problem, granularity))
        return f"Rephrased question: {_rephrase(problem)} Response: {reasoning} {answer}"
    if fmt == "symbolic":
        return " ".join([*_symbolic_lines(problem, granularity), answer])
    raise ValueError(f"unknown format '{fmt}'")


def program_corpus(key: CorpusKey, problems: list[Problem]) -> pd.DataFrame:
    """The program teacher's corpus rendered in process: what its server answers, without the server."""
    return rendered_corpus(key, problems, lambda problem: render(problem, key.granularity, key.format))
