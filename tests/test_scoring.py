"""Answer extraction and scoring for the four answer types: numbers, choices, yes/no, MATH."""

import json
import time
from pathlib import Path

import pytest

from study.core.datasets import score
from study.core.datasets.answers import (
    canonical_number,
    choices_equal,
    extract_choice,
    extract_math,
    extract_number,
    extract_yes_no,
    math_equal,
    normalize_math,
    numbers_equal,
    yes_no_equal,
)
from study.core.datasets.math_answers import boxed_answer
from study.core.datasets.problems import Choice

SVAMP_COT = Path("/work/shared/data/svamp/cot")

EXTRACTORS = [extract_number, extract_choice, extract_yes_no, extract_math]
EQUALS = [numbers_equal, choices_equal, yes_no_equal, math_equal]


# ---------------------------------------------------------------- numbers

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 145.0", "145"),
        ("The answer is 145.00", "145"),
        ("The answer is 145.", "145"),
        ("The answer is $1,000.", "1000"),
        ("The answer is $ 5", "5"),
        ("The answer is 1,000,000", "1000000"),
        ("The answer is 25%", "25"),
        ("The answer is 3/4", "0.75"),
        ("The answer is 1/16.", "0.0625"),
        ("The answer is 1/3", "0.333333333333"),
        ("The answer is 12 apples", "12"),
        ("The answer is 5 cm.", "5"),
        ("The answer is -2.", "-2"),
        ("The answer is -$5", "-5"),
        ("The answer is .5", "0.5"),
        ("The answer is: 42", "42"),
        ("Answer: 42", "42"),
        ("answer is:7", "7"),
        ("The answer is 12. Then 3 + 4 = 7.", "12"),  # the answer phrase beats the last number
        ("The answer is 12 + 13 = 25", "25"),  # an equation in the claim: what its last "=" gives
        ("The answer is 93 packs. The answer is 93", "93"),  # the last phrase wins
        ("Hence, the answer is not clear. 4 + 5 = 9", "9"),  # a phrase without a number is skipped
        ("he has 3 then 9 apples", "9"),  # else the last number
        ("8 - 3 = 5", "5"),  # "- 3" is subtraction, not -3
        ("Tom had 290-2 bananas", "2"),
        ("level3 of the x2 game", None),  # digits glued to words are not numbers
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("51.0", "51"), ("1,000", "1000"), ("$1,000", "1000"), ("25%", "25"), ("3/4", "0.75"), ("145.", "145"),
     (" -7 ", "-7"), ("0.50", "0.5"), ("1234.5678", "1234.5678"), ("abc", None), ("1/0", None), ("", None)],
)
def test_canonical_number(raw, expected):
    assert canonical_number(raw) == expected


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [
        ("145", "145", True),
        ("145.0", "145", True),
        ("145", "145.00", True),
        ("51", "51.0", True),  # SVAMP gold is a float
        ("1000", "1,000", True),  # GSM8K gold sometimes has commas
        ("$1,000", "1000", True),
        ("0.75", "3/4", True),
        ("25", "25%", True),
        ("0.333333333333", "1/3", True),  # a rounded repeating decimal
        ("12", "12 apples", True),
        ("-2", "-2.0", True),
        ("14", "41", False),
        ("145", "145.1", False),
        ("1234567", "1234568", False),  # no relative tolerance that would merge big numbers
        ("0.33", "1/3", False),
        (None, "3", False),
        ("3", "not a number", False),
    ],
)
def test_numbers_equal(predicted, gold, expected):
    assert numbers_equal(predicted, gold) is expected


# real teacher outputs from the released SVAMP rationales, with the data set's gold answer
@pytest.mark.parametrize(
    ("output", "gold"),
    [
        ("290.0 / 2.0 = 145.0. The answer is 145.0", "145"),
        (" Divide the total number of bananas by the number of groups. The answer is 145", "145.0"),
        ("Perform the division: 290 ÷ 2 = 145.The answer is 145", "145"),
        ("\n The answer is 11 necklaces * 28 beads per necklace = 308 beads. \n The answer is 308", "308"),
        ("Steven has 12 apples. Jake has 13 more apples than Steven. The answer is 12 + 13 = 25", "25"),
        ("so add 3 apples: 2 + 3 = 5 apples now. The answers is 5.", "5"),
        ("Final amount = 579371 - 255396 = 323975The answer is 323975", "323975"),
        ("$580,451 - $255,156 = $325,295.  The answer is 325295", "325295"),
        ("2 beads / 32 necklaces = 1/16 bead per necklace. The answer is 1/16.", "0.0625"),
        ("2 apples + 3 apples = 5 apples. Therefore, the total number of apples now on Rachel’s tree is 5.", "5"),
    ],
)
def test_real_teacher_outputs(output, gold):
    assert numbers_equal(extract_number(output), gold)


def _released(name_part: str) -> list[Path]:
    if not SVAMP_COT.is_dir():
        pytest.skip(f"{SVAMP_COT} is not here")
    return sorted(path for path in SVAMP_COT.glob("*.json") if name_part in path.name)


def test_a_number_is_found_in_nearly_every_released_ranked_rationale():
    files = _released("ranked")
    assert files
    for path in files:
        outputs = [record["output"] for record in json.loads(path.read_text())]
        found = sum(extract_number(output) is not None for output in outputs)
        assert found >= 0.99 * len(outputs), path.name


def test_human_rationales_all_score_against_svamp_gold():
    # the human annotations end "The answer is 145.0"; the gold file says "145"
    if not _released("svamp_human_annotation"):
        pytest.skip("no human annotations")
    gold = {r["instruction"]: r["output"] for r in json.loads((SVAMP_COT / "SVAMP_only_ans.json").read_text())}
    human = json.loads((SVAMP_COT / "svamp_human_annotation.json").read_text())
    assert len(human) == 700
    assert all(numbers_equal(extract_number(r["output"]), gold[r["instruction"]]) for r in human)


# ---------------------------------------------------------------- multiple choice

CHOICES = (Choice("A", "a dog"), Choice("B", "a river bank"), Choice("C", "bank"), Choice("D", "the sky"),
           Choice("E", "under the sea"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is B", "B"),
        ("The answer is (B)", "B"),
        ("The answer is (b).", "B"),
        ("The answer is b", "B"),
        ("the answer is: D.", "D"),
        ("Answer: B", "B"),
        ("So the answer is B because rivers have banks.", "B"),
        ("(B)", "B"),
        ("B:", "B"),
        ("B) a river bank", "B"),
        ("B", "B"),
        ("b", "B"),
        ("Let me think.\nC\n", "C"),  # a bare letter on its own line
        ("Option e is the only one under water.", "E"),
        ("The answer is a river bank", "B"),  # option text, not the article "a"
        ("The answer is A River  Bank.", "B"),  # case and spacing do not matter
        ("The answer is under the sea.", "E"),
        ("Rivers have banks, so it is a river bank.", "B"),  # option text outside a phrase
        ("A man walks to the bank of the river.", "C"),  # "bank" is C; "A man" is no choice
        ("I first thought (A), but (D) fits better.", "D"),  # else the last mention
        ("(A) is wrong and (C) is wrong. The answer is D", "D"),  # the phrase beats earlier mentions
        ("The answer is E. (A) and (B) are wrong.", "E"),  # ... and later ones
        ("The answer is (C) bank, not a river bank", "C"),  # within the claim, the first mention
    ],
)
def test_extract_choice_with_options(text, expected):
    assert extract_choice(text, CHOICES) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A man walks into a bar and orders a drink.", None),  # the article is not choice A
        ("A dog barks. A cat meows.", None),
        ("The answer is A", "A"),
        ("The answer is (A).", "A"),
        ("A: because dogs bark", "A"),
        ("It must be choice c", "C"),
        ("The answer is F", None),  # not a label without options naming it
        ("Nothing to choose here.", None),
        ("", None),
    ],
)
def test_extract_choice_without_options(text, expected):
    assert extract_choice(text) == expected


def test_extract_choice_uses_the_labels_of_the_options():
    options = (Choice("1", "red"), Choice("2", "green"), Choice("F", "blue"))
    assert extract_choice("The answer is F", options) == "F"
    assert extract_choice("I pick green.", options) == "2"
    assert extract_choice("The answer is (2)", options) == "2"


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [("B", "B", True), ("B", "b", True), ("B", "(B)", True), ("b", "B.", True), ("A", "B", False),
     (None, "B", False), ("B", "", False)],
)
def test_choices_equal(predicted, gold, expected):
    assert choices_equal(predicted, gold) is expected


# ---------------------------------------------------------------- yes / no

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is yes", "yes"),
        ("The answer is No.", "no"),
        ("The answer is: TRUE", "yes"),
        ("So the answer is false.", "no"),
        ("No, wait. Hamsters are mammals, so the answer is yes.", "yes"),  # the phrase beats the first word
        ("The answer is yes. No further checks are needed.", "yes"),  # ... and later words
        ("Is it true? I think no", "no"),  # else the last occurrence
        ("Yes", "yes"),
        ("Nobody knows; I cannot tell.", None),  # "Nobody" is not "no"
        ("", None),
    ],
)
def test_extract_yes_no(text, expected):
    assert extract_yes_no(text) == expected


@pytest.mark.parametrize(
    ("predicted", "gold", "expected"),
    [("yes", "yes", True), ("yes", "true", True), ("yes", "True", True), ("no", "False", True),
     ("no", "no", True), ("yes", "Yes.", True), ("yes", "no", False), ("no", "true", False), (None, "yes", False),
     ("yes", "maybe", False)],
)
def test_yes_no_equal(predicted, gold, expected):
    assert yes_no_equal(predicted, gold) is expected


# ---------------------------------------------------------------- MATH

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),  # nested braces
        (r"\boxed{\left( 1, 2 \right)}", "(1,2)"),
        (r"We get \boxed{3} at first, but correcting, \boxed{4}.", "4"),  # the last box
        (r"hence \boxed 5$.", "5"),
        (r"\fbox{7}", "7"),
        (r"\boxed{\{1, 2\}}", "{1,2}"),  # escaped braces inside the box
        (r"\boxed{90^\circ}", "90"),
        (r"\boxed{5\text{ cm}}", "5"),
        (r"\boxed{x = 5}", "5"),
        (r"\boxed{\text{(C)}}", "C"),
        (r"The answer is $\frac{1}{2}$.", r"\frac{1}{2}"),  # no box: the answer phrase
        ("The answer is 0.5. Because halves.", "0.5"),
        ("The answer is 5!", "5!"),
        (r"The answer is \dfrac34", r"\frac{3}{4}"),
        (r"\boxed{unclosed", None),
        ("I could not solve it.", None),
        ("", None),
    ],
)
def test_extract_math(text, expected):
    assert extract_math(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\dfrac{3}{4}", r"\frac{3}{4}"),
        (r"\tfrac12", r"\frac{1}{2}"),
        (r"\frac12", r"\frac{1}{2}"),
        (r"\frac1{2}", r"\frac{1}{2}"),
        (r"\frac{\sqrt3}2", r"\frac{\sqrt{3}}{2}"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        ("90°", "90"),
        (r"5\text{ cm}", "5"),
        (r"6 \mbox{ square units}", "6"),
        (r"\text{(A)}", "A"),
        (r"\text{Monday}", "Monday"),
        (r"50\%", "50"),
        (r"\$5", "5"),
        ("$x = 3$", "3"),
        (r"\displaystyle 2\!\cdot\!3", r"2\cdot3"),
        (r"2\, \pi", r"2\pi"),
        (r"\pi r^2", r"\pi r^2"),  # the space after a command is kept: \pir is no command
        (".5", "0.5"),
        ("7.", "7"),
        ("1,000", "1000"),
        (r"10{,}000", "10000"),
        ("(1,2)", "(1,2)"),
    ],
)
def test_normalize_math(raw, expected):
    assert normalize_math(raw) == expected
    assert normalize_math(expected) == expected  # normalising twice changes nothing


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        (r"\frac{1}{2}", "0.5"),
        (r"\frac{1}{2}", "1/2"),
        ("0.5", ".5"),
        (r"\dfrac{3}{4}", r"\frac34"),
        (r"\frac{2}{4}", r"\frac{1}{2}"),
        (r"\sqrt{4}", "2"),
        (r"\sqrt[3]{8}", "2"),
        (r"2\sqrt2", r"\sqrt{8}"),
        (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
        (r"2\pi", r"2 \pi"),
        (r"\pi \cdot 2", r"2\pi"),
        (r"\pi r^2", r"r^{2}\pi"),
        ("2x+2", "2(x+1)"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"(\frac{1}{2}, 3]", "(0.5,3]"),
        (r"(-\infty, 3)", r"\left(-\infty,3\right)"),
        (r"90^\circ", "90"),
        (r"5\text{ cm}", "5"),
        ("x = 5", "5"),
        ("1,000", "1000"),
        (r"\text{(C)}", "C"),
        (r"\sin \pi", "0"),
        ("(x+1)^2", "x^2+2x+1"),  # expressions with symbols agree at every sample point
        (r"\frac{x}{2}", "0.5x"),
        (r"\sin^2 x + \cos^2 x", "1"),
    ],
)
def test_math_equal(predicted, gold):
    assert math_equal(predicted, gold)
    assert math_equal(gold, predicted)


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("3", "4"),
        (r"\frac{1}{2}", "0.51"),
        ("0.333", r"\frac{1}{3}"),
        ("(1,2)", "[1,2]"),  # an open interval is not a closed one
        ("(1,2)", "(2,1)"),
        ("(1,2)", "(1,2,3)"),
        ("(1,2)", "1"),
        ("x", "y"),
        ("(x+1)^2", "x^2+2x+2"),
        (r"x^{100000}", "x"),  # too big a power to simplify: not shown equal
        (r"9^{9^{9}}", "1"),
        (r"\frac{1}{0}", "1"),
        ("input()", "1"),  # letters never reach python as names
        ("__import__('os')", "0"),
        (r"\unknown{3}", "3"),
        ("A", "B"),
        (None, "1"),
    ],
)
def test_math_not_equal(predicted, gold):
    assert not math_equal(predicted, gold)


def test_math_scoring_stays_fast_on_hostile_answers():
    hostile = [r"9^{9^{9^{9}}}", "(" * 60 + "1" + ")" * 60, "(" * 150 + "1" + ")" * 150, "x^" * 90 + "2", r"\frac{" * 60, "1" * 5000,
               r"\sqrt{" * 40 + "2" + "}" * 40, r"10^{10^{10}} - 10^{10^{10}}",
               r"2^{10000}-2^{10000}", r"(a+b+c+d+e)^{50}-(a+b+c+d)^{50}"]
    start = time.perf_counter()
    for answer in hostile:
        math_equal(answer, "1")
        extract_math(rf"\boxed{{{answer}}}")
    assert time.perf_counter() - start < 5


def test_extraction_stays_fast_on_hostile_texts():
    # unclosed delimiters, long word runs and thousands of labels: each extractor stays near-linear
    hostile = ["The answer is 5 " + "a" * 20000 + "!", "\\[" * 5000 + "1", "\\begin{align}" * 3000, "[asy]" * 5000,
               "$" * 20001, "A: 1, " * 5000 + " is C.", "(A) " * 5000, "no, " * 10000, "1 + " * 5000 + "x"]
    start = time.perf_counter()
    for text in hostile:
        for extract in EXTRACTORS:
            extract(text, ())
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- one shape for the registry

@pytest.mark.parametrize("extract", EXTRACTORS)
def test_every_extractor_takes_text_and_choices(extract):
    assert extract("", CHOICES) is None
    assert extract("nothing at all here", ()) is None


@pytest.mark.parametrize("equal", EQUALS)
def test_no_prediction_is_never_right(equal):
    assert equal(None, "1") is False


# ---------------------------------------------------------------- MATH: kinds of text in real teacher outputs

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a plain word after the value is no part of it
        ("So she walks 3 * 60 = 180 minutes. The answer is 180 minutes.", "180"),
        ("The answer is 7 crates", "7"),
        ("The answer is 12 hrs", "12"),
        ("The answer is 4 square feet.", "4"),
        ("The answer is 2 pi", "2pi"),  # ... unless it is a function name
        ("The answer is x = 9 inches.", "9"),
        # doubled backslashes, escaped twice on the way
        (r"The answer is \\frac{2}{3}", r"\frac{2}{3}"),
        (r"So the angle is \\boxed{45^{\\circ}}.", "45"),
        # a markup tag after the answer ends it
        ("The answer is 517 </Answer>", "517"),
        ("The answer is 88</final solution>\n<next>", "88"),
        # an equation after the phrase: its final value
        ("The answer is 4 * 125 = 5,000", "5000"),
        (r"The answer is $2 \cdot 17 = 34$.", "34"),
        ("The answer is 4! = 24", "24"),
        # no phrase and no box: the last value the text states
        ("Each box holds 6 eggs and there are 9 boxes, so 6 * 9 = 54 eggs in all.", "54"),
        ("Adding them up gives 15.\nSo there are 15 ways.", "15"),
        (r"The side is $s = 8$, so the area is $s^2 = 64$ square units.", "64"),
        (r"We need \[\frac{4}{2} = 2\] buckets.", "2"),
        (r"Hence $n \equiv 4 \pmod{9}$.", "4"),
        (r"Adding, $17 + 25 = 42,$ which we wanted.", "42"),
        ("Reducing mod 5,\n\\begin{align*}\n36 &\\equiv 1 + 0 \\\\\n&\\equiv 1 \\pmod{5}.\n\\end{align*}", "1"),
        (r"In all, $3 \cdot 4 = 12 \Longrightarrow 12$.", "12"),
        ("So the sum is $31$.\n[asy]\nlabel(\"5\",(1,2));\n[/asy]", "31"),  # a diagram's code states nothing
        ("Checking the answer is a good habit. The total is 41.", "41"),  # a claim in prose states no value
    ],
)
def test_extract_math_from_teacher_outputs(text, expected):
    assert extract_math(text) == expected


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("0", "02"),  # a leading zero is no product 0*2
        ("2", "02"),
        ("9y", "9y1"),  # a digit after a letter is no product y*1
        ("x", "x1"),
        ("3a", "3a2"),
    ],
)
def test_juxtaposed_digits_are_not_multiplied(predicted, gold):
    assert not math_equal(predicted, gold)
    assert not math_equal(gold, predicted)


def test_doubled_backslashes_in_gold_are_single():
    assert math_equal(r"\frac{1}{4}", r"\\frac{1}{4}")
    assert math_equal("90", r"90^{\\circ}")


def test_math_gold_is_the_boxed_answer_only():
    # a solution without \boxed{} has no gold answer, whatever numbers it mentions
    assert boxed_answer(r"so $x = \boxed{\dfrac12}$ and 3 more") == r"\frac{1}{2}"
    assert boxed_answer(r"\\boxed{7}") == "7"
    assert boxed_answer("There are $5$ ways.") is None


# ---------------------------------------------------------------- fallbacks never take a stray word

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Spreading false rumors about a neighbour hurts everyone involved.", None),  # "false" qualifies a noun
        ("There is no evidence that owls can read", None),
        ("Owls cannot read. So, false.", "no"),  # a word standing as the answer still counts
        ("Penguins are birds, true", "yes"),
        ("The claim is false because whales breathe air", "no"),  # said of something, it still counts
        ("No, penguins cannot fly; false rumors say otherwise.", "no"),
    ],
)
def test_extract_yes_no_fallback_takes_only_a_standing_word(text, expected):
    assert extract_yes_no(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a line listing the options chooses none of them; the conclusion does
        ("Options: A: 12, B: 15, C: 18, D: 21.\nFrom 3 * 6 = 18, the right option is C.", "C"),
        ("We compare A) red, B) blue, C) green, D) pink and E) gray.\nGrass is green, so I choose C.", "C"),
        ("A: 12\nB: 15\nC: 18\nD: 21\nSince 3 * 6 = 18, the value is C.", "C"),
        ("B: 10 is small, C: 20 fits, D: 30 is big, E: 40 is bigger. C", "C"),  # a label as the last sentence
        # an answer phrase naming no option leaves an earlier label unchosen
        ("Choice E says 40, but that is too big. The answer is none of the above.", None),
        ("(B) fails the check. The answer is: None of these.", None),
    ],
)
def test_extract_choice_fallback_takes_no_stray_label(text, expected):
    assert extract_choice(text) == expected


def test_a_none_of_the_above_option_is_still_chosen():
    options = (Choice("A", "4"), Choice("B", "5"), Choice("C", "None of the above"))
    assert extract_choice("Choice A is wrong. The answer is None of the above.", options) == "C"


@pytest.mark.parametrize(
    ("predicted", "gold"),
    [
        ("63", r"63\text{ tiles"),  # a gold cut at its first closing brace, as some released golds are
        (r"3\sqrt{5}", r"3\sqrt{5"),
        ("2.40", r"2.4\ \text{EUR"),
        ("12", r"12\;\text{kg}"),
    ],
)
def test_math_equal_on_cut_golds_and_spaced_units(predicted, gold):
    assert math_equal(predicted, gold)


def test_a_cut_gold_that_lost_a_value_stays_unequal():
    assert not math_equal(r"\frac{5}{7}", r"\frac{5}")


@pytest.mark.parametrize(
    ("dataset", "text", "gold", "expected"),
    [
        ("math", "Driving 3 hours at 60 mph covers 180 miles. The answer is 180 miles.", "180", True),
        ("math", r"The answer is \\frac{3}{8} </Solution>", r"\frac{3}{8}", True),
        ("math", "The answer is 8 * 90 = 720", "720", True),
        ("math", "So x = 0.", "02", False),
        ("strategyqa", "Some people spread false rumors about bats.", "False", False),
        ("csqa", "Options A: cat, B: dog, C: owl, D: bat.\nOwls hunt at night, so the answer choice is C.", "D", False),
        ("csqa", "Choice E fits least. The answer is none of the above.", "E", False),
    ],
)
def test_public_score_on_each_kind_of_text(dataset, text, gold, expected):
    assert score(dataset, text, gold) is expected
