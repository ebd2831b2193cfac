"""HF `math-verify` (the checker lighteval and TRL use) against our MATH checker, in one run.

Two measures, each counting how often a checker gives the expected verdict:
- the test cases: every MATH case of tests/test_scoring.py (extraction cases scored against their
  expected answer, equal and unequal pairs, juxtaposed digits, doubled backslashes);
- the paper's MATH training file (`<data>/paper/math/train_paper.json`): each human `solution`
  scored against its gold `output`. Every solution is right, so a checker that says "wrong" is
  wrong, unless the gold itself is broken (some are cut at their first `}`); the rows where the two
  disagree are printed, to be read.
math-verify gets the gold as `$gold$` and the text as it is (its default extraction: LaTeX, then
expressions); a bare answer is wrapped in `$...$` too.

    pip install math-verify   # not a dependency of the project
    python bench/math_verify_compare.py --data ../shared/data

Measured 2026-12-02 (math-verify 0.9.0; ~20 s):
    test cases: 118; ours right 118, math-verify right 107 (it misses \\fbox, the last of two
    boxes, `5!`, `\\dfrac34`, a gold cut at its `}`, takes [asy] code, and has 2 == 02, 9y == 9y1)
    paper MATH rows: 1297; ours right 1141, math-verify right 1094; they disagree on 55 (4.2%):
    ours right on 51 (math-verify takes numbers from [asy] diagram code, a system of equations
    instead of its solution, `3!=6` as "not equal", \\text{Friday} as friday, a gold cut at its
    first `}`), math-verify on 4 (a value in an array, the first of two formulas in the last
    sentence, "0 = k" at an align's end, "The answer to the given problem is $11.$").
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

from math_verify import parse, verify

from study.core.datasets.math_answers import extract_math, math_equal

TESTS = Path(__file__).resolve().parents[1] / "tests" / "test_scoring.py"
Case = tuple[str, str, str, bool, bool]  # kind, text, gold, expected verdict, text is a bare answer


def test_cases() -> list[Case]:
    spec = importlib.util.spec_from_file_location("test_scoring", TESTS)
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)

    def params(test) -> list[tuple]:
        return next(mark.args[1] for mark in test.pytestmark if mark.name == "parametrize")

    cases: list[Case] = [("extract", text, expected, True, False)
                         for test in (tests.test_extract_math, tests.test_extract_math_from_teacher_outputs)
                         for text, expected in params(test) if expected is not None]
    cases += [("equal", a, b, True, True) for p, g in params(tests.test_math_equal) for a, b in ((p, g), (g, p))]
    cases += [("equal", p, g, True, True) for p, g in params(tests.test_math_equal_on_cut_golds_and_spaced_units)]
    cases += [("unequal", p, g, False, True) for p, g in params(tests.test_math_not_equal) if p is not None]
    cases += [("juxtaposed", a, b, False, True)
              for p, g in params(tests.test_juxtaposed_digits_are_not_multiplied) for a, b in ((p, g), (g, p))]
    return cases


def ours(text: str, gold: str, bare: bool) -> bool:
    return math_equal(text if bare else extract_math(text), gold)


def theirs(text: str, gold: str, bare: bool) -> bool:
    try:
        return bool(verify(parse(f"${gold}$"), parse(f"${text}$" if bare else text)))
    except Exception:  # noqa: BLE001 -- a checker that fails has not shown equality
        return False


def compare_on_tests() -> None:
    cases = test_cases()
    verdicts = [(ours(t, g, b) == e, theirs(t, g, b) == e, kind, t, g) for kind, t, g, e, b in cases]
    print(f"test cases: {len(cases)}; ours right {sum(v[0] for v in verdicts)}, "
          f"math-verify right {sum(v[1] for v in verdicts)}")
    for our_ok, their_ok, kind, text, gold in verdicts:
        if not (our_ok and their_ok):
            print(f"  {kind}: {text!r} vs gold {gold!r}: ours {'right' if our_ok else 'WRONG'}, "
                  f"math-verify {'right' if their_ok else 'WRONG'}")


def compare_on_paper_rows(data: Path) -> None:
    rows = json.loads((data / "paper" / "math" / "train_paper.json").read_text())
    verdicts = [(ours(r["solution"], r["output"], False), theirs(r["solution"], r["output"], False)) for r in rows]
    disagree = [i for i, (a, b) in enumerate(verdicts) if a != b]
    print(f"paper MATH rows: {len(rows)}; ours right {sum(a for a, _ in verdicts)}, math-verify right "
          f"{sum(b for _, b in verdicts)}, they disagree on {len(disagree)} ({len(disagree) / len(rows):.1%})")
    for i in disagree:
        row = rows[i]
        print(f"  row {i}: gold {row['output']!r}, ours {extract_math(row['solution'])!r} "
              f"({'right' if verdicts[i][0] else 'wrong'}), math-verify {[str(v) for v in parse(row['solution'])][:1]}"
              f" | ...{row['solution'][-80:]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (holds paper/math/)")
    args = parser.parse_args()
    compare_on_tests()
    compare_on_paper_rows(args.data)


if __name__ == "__main__":
    main()
