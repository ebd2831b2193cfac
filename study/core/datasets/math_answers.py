"""Answer extraction and scoring for MATH competition answers (LaTeX expressions).

The answer is the content of the last \\boxed{...} (or \\fbox{...}), else what follows the last
"The answer is" (up to a trailing tag such as `</Solution>`, without plain words after the value:
"180 miles" is 180; of an equation, the value after its last "="), else the last value the text
states: its last formula ($...$, \\[...\\], an align block) or bare number. Doubled backslashes
(`\\\\frac`, escaped twice on the way) are read as single ones. `normalize_math` drops what only
changes the look (spacing, \\left/\\right, $, degrees, units, dfrac, \\frac12) so that most
equal answers become equal strings; `math_equal` then has sympy compare the values of the rest
(1/2 == 0.5, \\sqrt{4} == 2), element by element for tuples and intervals. sympy's parse_expr
evaluates its input, so it only ever sees a short string translated here from LaTeX, limited to
digits, one-letter symbols, known functions, operators and parentheses; juxtaposed digits ("x1",
"02") are refused, as sympy would multiply them. Values are compared with evalf, expressions with symbols at a few fixed points, and
exponents are bounded, so that scoring can neither crash nor hang.
"""

from __future__ import annotations

import math
import re
import string

import sympy
from sympy.parsing.sympy_parser import implicit_multiplication_application, parse_expr, standard_transformations

from study.core.datasets.problems import Choice

# "The answer is", "answer is:", "Answer:", "the answer would be"; "answers is" occurs in teacher outputs.
# answers.py, which re-exports this module's public names, uses the same phrase and `answer_claims`.
ANSWER_PHRASE = re.compile(r"\banswers?(?:\s*:|\s+(?:is|was|would be|should be|will be)\b\s*:?)\s*",
                           re.IGNORECASE)
# a math claim ends at a line break or a full stop followed by a space; "0.5" and "5!" stay whole
MATH_CLAIM_END = re.compile(r"\n|\.(?=\s|$)")
INLINE_MATH = re.compile(r"\$+([^$]+)\$+")
BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
COMMAND = re.compile(r"\\([a-zA-Z]+|.)")
FRAC_OR_SQRT = re.compile(r"\\(frac|sqrt)(?![a-zA-Z])")

TEXT_COMMAND = r"\\(?:text|textrm|textbf|textit|textnormal|mbox|mathrm|mathbf)\s*\{"
# a trailing word in \text{} after a value is a unit: "5\text{ cm}", "6\text{ square units}^2"
UNIT_SUFFIX = re.compile(rf"(?<=[^\s\\])(?:\s|\\[ ,;:!])*{TEXT_COMMAND}\s*[a-zA-Z][a-zA-Z\s.]*\}}"
                         rf"(?:\^\{{?\d\}}?)?\s*\.?\s*$")
TEXT_WRAPPER = re.compile(rf"{TEXT_COMMAND}([^{{}}]*)\}}")
PRESENTATION = [
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree"), ""),
    (re.compile(r"\\?%"), ""),
    (re.compile(r"\\(?:left|right|displaystyle|textstyle|big|Big|bigl|bigr|Bigl|Bigr)(?![a-zA-Z])"), ""),
    (re.compile(r"\\[!,;: ]|~"), ""),
    (re.compile(r"\\[dtc]frac(?![a-zA-Z])"), r"\\frac"),
    (re.compile(r"\\[{}]"), lambda match: match.group(0)[1]),
    (re.compile(r"\{,\}"), ","),
]
SPACES = re.compile(r"(\\[a-zA-Z]+)?\s+")
ASSIGNMENT = re.compile(r"^(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?=(?P<value>[^=]+)$")
BARE_DECIMAL = re.compile(r"(?<![\d.])\.(\d)")
THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
CHOICE_LETTER = re.compile(r"\(([A-E])\)")
# "\\frac" escaped twice on its way through JSON or a prompt; "\\" alone (a LaTeX line break) stays
DOUBLED_BACKSLASH = re.compile(r"\\\\(?=[a-zA-Z{}])")
# "336 </Solution Path>": a markup tag ends the claim
TAG = re.compile(r"</?[A-Za-z][\w \-]*>")
# "180 miles", "3 boxes." after a value: words, not part of the answer; "2 pi" keeps its pi
TRAILING_WORDS = re.compile(r"(?<=[\d})%])\s+(?P<words>[A-Za-z][A-Za-z']+(?:\s+[A-Za-z']+)*)\s*\.?\s*$")
# "the final answer is a common mistake": a claim of three or more plain words states no value
PROSE = re.compile(r"\s*[A-Za-z']+(?:[\s,]+[A-Za-z']+){2,}[\s.,;:!]*")
# "N \equiv 10 \pmod{180}": a congruence states its residue
MODULUS = re.compile(r"\s*(?:\\pmod\s*\{[^{}]*\}|\(\s*\\?mod\s*[^()]*\))\s*\.?\s*$")
# "\\equiv 7", "\\to 16", "\\Longrightarrow 840": read like "=", the value follows
ARROW = re.compile(r"\\(?:equiv|to|rightarrow|Rightarrow|longrightarrow|Longrightarrow|implies)(?![a-zA-Z])")
# an equals sign of an equation; not one of "<=", ">=", "=="; "3!=6" is a factorial in LaTeX
EQUALS = re.compile(r"(?<![<>=])=(?!=)")
# the delimiters of formulas and of a diagram's [asy] code (which states nothing), paired in one
# linear pass: a regex with lazy bodies is quadratic on unclosed delimiters
DELIMITER = re.compile(r"\\\$|\$\$|\$|\\\[|\\\]|\\\(|\\\)|\[/?asy\]"
                       r"|\\(?:begin|end)\{(?:align|equation|eqnarray|gather)\*?\}")
CLOSER = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)", "[asy]": "[/asy]"}
NUMBER_TEXT = r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
# "10 + 11 = 21": a chain of numbers and operators outside formulas is one statement
BARE_CHAIN = re.compile(rf"(?<![\w.\\]){NUMBER_TEXT}(?:\s*[-+*/×÷=x]\s*{NUMBER_TEXT})*(?!\w)")

# LaTeX commands the sympy translation knows, as the python names parse_expr reads
COMMAND_WORDS = {"pi": " pi ", "infty": " oo ", "cdot": "*", "times": "*", "div": "/", "ln": " log ",
                 "log": " log ", "sin": " sin ", "cos": " cos ", "tan": " tan ", "cot": " cot ",
                 "sec": " sec ", "csc": " csc ", "exp": " exp "}
FUNCTION_NAMES = {"pi", "oo", "sqrt", "log", "sin", "cos", "tan", "cot", "sec", "csc", "exp"}
LETTER_RUN = re.compile(r"[a-zA-Z]+")
PYTHON_SAFE = re.compile(r"[0-9a-zA-Z+\-*/(). ]*")
# a digit glued after a letter ("9y1", "x1") or a leading zero ("02"): not an expression sympy may read
JUXTAPOSED_DIGITS = re.compile(r"[a-zA-Z]\d|(?<![\d.])0\d")
SYMPY_MAX_CHARS = 200  # longer answers are compared as strings only
MAX_EXPONENT = 10_000  # evalf works at a precision that grows with the exponent's size
SAMPLE_POINTS = 3  # expressions with symbols agreeing at 3 generic points are taken as equal
TRANSFORMATIONS = standard_transformations + (implicit_multiplication_application,)


def extract_math(text: str, choices: tuple[Choice, ...] = ()) -> str | None:
    """The normalised content of the last \\boxed{}, else of the last "The answer is ...", else the
    last value the text states."""
    text = DOUBLED_BACKSLASH.sub(r"\\", text)
    raw = last_boxed(text)
    if raw is None:
        raw = next((claim for claim in _math_claims(text) if claim.strip(" .$")), None)
    if raw is None:
        raw = _last_stated_value(text)
    return (normalize_math(raw) or None) if raw is not None else None


def boxed_answer(solution: str) -> str | None:
    """The normalised content of a solution's last \\boxed{} (the MATH convention for gold), or None;
    unlike `extract_math`, no other mention counts."""
    raw = last_boxed(DOUBLED_BACKSLASH.sub(r"\\", solution))
    return (normalize_math(raw) or None) if raw is not None else None


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...}/\\fbox{...} (braces balanced), or "5" for `\\boxed 5`."""
    for box in reversed(list(BOX.finditer(text))):
        rest = text[box.end():].lstrip()
        if rest.startswith("{"):
            group = _braced(rest, 0)
            if group is not None:
                return group[0]
        elif rest:
            return re.match(r"[^\s$]*", rest).group(0)
    return None


def answer_claims(text: str, end: re.Pattern[str]) -> list[str]:
    """What follows each answer phrase up to `end` (the end of its sentence), the last phrase first."""
    claims = []
    for match in ANSWER_PHRASE.finditer(text):
        stop = end.search(text, match.end())
        claims.append(text[match.end():stop.start() if stop else len(text)])
    return claims[::-1]


def _math_claims(text: str) -> list[str]:
    return [_claim_value(claim) for claim in answer_claims(text, MATH_CLAIM_END)]


def _claim_value(claim: str) -> str:
    """"$x = 2$, since ..." -> "2" (the inline formula, not the words after it); "180 miles" -> "180";
    "6 * 720 = 4,320 </Solution>" -> "4,320"."""
    claim = TAG.split(claim, 1)[0]
    if PROSE.fullmatch(claim):
        return ""
    inline = INLINE_MATH.search(claim)
    value = inline.group(1) if inline else _without_trailing_words(claim)
    return _after_last_equals(value)


def _without_trailing_words(claim: str) -> str:
    words = TRAILING_WORDS.search(claim)
    if words is None or any(word.lower() in FUNCTION_NAMES for word in words.group("words").split()):
        return claim
    return claim[:words.start()]


def _after_last_equals(value: str) -> str:
    # the last "=" outside brackets: "f(x=1)" keeps its "="; nothing after it keeps the whole
    value = ARROW.sub("=", MODULUS.sub("", value).rstrip(" ,"))
    signs = [sign.start() for sign in EQUALS.finditer(value)]
    if not signs or not value[signs[-1] + 1:].strip(" .$") or _top_level_split(value[:signs[-1]], "") is None:
        return value
    return value[signs[-1] + 1:]


def _last_stated_value(text: str) -> str | None:
    """The last value the text states: a formula ($...$, \\[...\\], an align block), a bare number or a
    chain of numbers and operators ("10 + 11 = 21"), of an equation the value after its last "=";
    a diagram's [asy] code states nothing. None when the text states no value."""
    spans = _formula_spans(text)
    values = [(start, content) for start, _, content in spans if content is not None]
    pieces, last = [], 0
    for start, end, _ in spans:  # numbers inside formulas and diagrams are theirs
        pieces += [text[last:start], " " * (end - start)]
        last = end
    outside = "".join(pieces) + text[last:]
    values += [(m.start(), m.group(0)) for m in BARE_CHAIN.finditer(outside)]
    values = [value for value in sorted(values) if value[1].strip(" .,")]
    return _after_last_equals(values[-1][1]) if values else None


def _formula_spans(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, content) of each formula in order, content None for [asy] code; an escaped \\$ is
    no delimiter, and an unclosed one takes the rest of the text."""
    spans: list[tuple[int, int, str | None]] = []
    opening: re.Match[str] | None = None
    for token in DELIMITER.finditer(text):
        delimiter = token.group(0)
        if opening is None and delimiter != "\\$":
            opening = token if _closer(delimiter) else None
        elif opening is not None and delimiter == _closer(opening.group(0)):
            content = None if opening.group(0) == "[asy]" else text[opening.end():token.start()]
            spans.append((opening.start(), token.end(), content))
            opening = None
    return spans


def _closer(delimiter: str) -> str | None:
    if delimiter.startswith("\\begin"):
        return delimiter.replace("begin", "end", 1)
    return CLOSER.get(delimiter)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the brace group opening at `start` and the index after it; None if unclosed."""
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # an escaped brace \{ does not count
            continue
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return text[start + 1:index], index + 1
        index += 1
    return None


def normalize_math(answer: str) -> str:
    """The answer without what only changes its look: `\\dfrac12\\text{ cm}` -> `\\frac{1}{2}`."""
    text = UNIT_SUFFIX.sub("", _closed(DOUBLED_BACKSLASH.sub(r"\\", answer.strip())))
    text = TEXT_WRAPPER.sub(lambda match: match.group(1), text)
    for pattern, replacement in PRESENTATION:
        text = pattern.sub(replacement, text)
    # a space is kept only where it ends a command name: "\pi r" is not "\pir"
    text = SPACES.sub(lambda m: _space(m, text), text)
    text = _brace_arguments(text).rstrip(".")
    assignment = ASSIGNMENT.match(text)
    if assignment:
        text = assignment.group("value")
    text = BARE_DECIMAL.sub(r"0.\1", text)
    if THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    letter = CHOICE_LETTER.fullmatch(text)
    return letter.group(1) if letter else text


def _closed(text: str) -> str:
    """The text with its unclosed braces closed at the end: a gold cut at its first closing brace
    (`441\\text{ pounds`, as the paper's MATH files hold some) reads as meant."""
    unescaped = re.sub(r"\\.", "", text)
    missing = unescaped.count("{") - unescaped.count("}")
    return text + "}" * missing if missing > 0 else text


def _space(match: re.Match[str], text: str) -> str:
    command = match.group(1) or ""
    followed_by_letter = match.end() < len(text) and text[match.end()].isalpha()
    return f"{command} " if command and followed_by_letter else command


def _brace_arguments(text: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\sqrt2` -> `\\sqrt{2}`: one spelling for the same value."""
    out, index = [], 0
    while index < len(text):
        command = FRAC_OR_SQRT.match(text, index)
        if not command:
            out.append(text[index])
            index += 1
            continue
        out.append(command.group(0))
        index = command.end()
        if command.group(1) == "sqrt" and text.startswith("[", index) and "]" in text[index:]:
            close = text.index("]", index)
            out.append(text[index:close + 1])
            index = close + 1
        for _ in range(2 if command.group(1) == "frac" else 1):
            argument = _argument(text, index)
            if argument is None:
                break
            out.append("{" + _brace_arguments(argument[0]) + "}")
            index = argument[1]
    return "".join(out)


def _argument(text: str, index: int) -> tuple[str, int] | None:
    """One LaTeX argument at `index`: a brace group's content, a command, or a single character."""
    if index >= len(text):
        return None
    if text[index] == "{":
        return _braced(text, index)
    command = COMMAND.match(text, index)
    if command:
        return command.group(0), command.end()
    return text[index], index + 1


def math_equal(predicted: str | None, gold: str) -> bool:
    """Whether two MATH answers are equal: as normalised strings, as sympy values, or element-wise."""
    if predicted is None:
        return False
    left, right = normalize_math(predicted), normalize_math(gold)
    if left == right:
        return True
    left_items, right_items = _elements(left), _elements(right)
    if left_items is None or right_items is None:
        return left_items is None and right_items is None and _same_value(left, right)
    (left_open, left_parts, left_close), (right_open, right_parts, right_close) = left_items, right_items
    return (left_open == right_open and left_close == right_close and len(left_parts) == len(right_parts)
            and all(_same_value(a, b) for a, b in zip(left_parts, right_parts)))


def _elements(text: str) -> tuple[str, list[str], str] | None:
    """"(1,2]" -> ("(", ["1", "2"], "]"); None for a single value."""
    opening, closing, inner = "", "", text
    if len(text) >= 2 and text[0] in "([{" and text[-1] in ")]}" and _top_level_split(text[1:-1], "") is not None:
        opening, closing, inner = text[0], text[-1], text[1:-1]
    parts = _top_level_split(inner, ",")
    return (opening, parts, closing) if parts is not None and len(parts) > 1 else None


def _top_level_split(text: str, separator: str) -> list[str] | None:
    """`text` split at `separator` outside brackets; None when its brackets do not balance."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if depth < 0:
            return None
        if char == separator and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    return parts + ["".join(current)] if depth == 0 else None


def _same_value(left: str, right: str) -> bool:
    if left == right:
        return True
    if max(len(left), len(right)) > SYMPY_MAX_CHARS:
        return False
    try:
        return _sympy_equal(left, right)
    except Exception:  # noqa: BLE001 -- any sympy failure means "not shown equal", never a crash
        return False


def _sympy_equal(left: str, right: str) -> bool:
    left_expr, right_expr = _to_sympy(left), _to_sympy(right)
    if left_expr is None or right_expr is None:
        return False
    if not (_bounded_powers(left_expr) and _bounded_powers(right_expr)):
        return False
    # compared numerically on the unevaluated trees, at a few points for expressions with symbols:
    # simplify and exact evaluation can take minutes ((x+y+z)^{50}, 10^{1000}), evalf cannot
    difference = sympy.Add(left_expr, sympy.Mul(-1, right_expr, evaluate=False), evaluate=False)
    symbols = sorted(difference.free_symbols, key=str)
    points = [_sample_point(symbols, k) for k in range(SAMPLE_POINTS)] if symbols else [{}]
    return all(_near_zero(difference, right_expr, point) for point in points)


def _sample_point(symbols: list[sympy.Symbol], k: int) -> dict[sympy.Symbol, sympy.Float]:
    # distinct, positive and irregular values, so x - y or sqrt(x) do not vanish or fail by accident
    return {symbol: sympy.Float(0.5 + 2 * math.modf((i + 1) * 0.6180339887 + k * 0.4142135623)[0])
            for i, symbol in enumerate(symbols)}


def _near_zero(difference: sympy.Expr, reference: sympy.Expr, point: dict[sympy.Symbol, sympy.Float]) -> bool:
    gap = abs(complex(difference.evalf(30, subs=point)))
    scale = abs(complex(reference.evalf(30, subs=point)))
    return math.isfinite(gap) and gap <= 1e-9 * max(1.0, scale)


def _bounded_powers(expr: sympy.Basic) -> bool:
    """Whether every numeric exponent is at most MAX_EXPONENT; checked innermost first, so evaluating an
    exponent never meets a power tower (evalf's precision grows with the exponent: 9^{9^9} hangs)."""
    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_number:
            size = abs(complex(node.exp.evalf(15)))
            if not size <= MAX_EXPONENT:  # also rejects nan
                return False
    return True


def _to_sympy(latex: str) -> sympy.Expr | None:
    """The value of a normalised LaTeX answer, unevaluated; None when it is not a plain expression."""
    try:
        python = _python_expression(latex)
    except ValueError:
        return None
    # juxtaposed digits are no product: "x1" is not x*1 and "02" not 0*2 (sympy would multiply both)
    if JUXTAPOSED_DIGITS.search(python):
        return None
    # names other than known functions are products of one-letter symbols ("xy" -> x*y), so no
    # built-in python name can reach parse_expr's eval
    python = LETTER_RUN.sub(lambda m: m.group(0) if m.group(0) in FUNCTION_NAMES else "*".join(m.group(0)),
                            python)
    # "()" would be a call or an empty tuple, never a value
    if not python.strip() or not PYTHON_SAFE.fullmatch(python) or re.search(r"\(\s*\)", python):
        return None
    symbols = {letter: sympy.Symbol(letter) for letter in string.ascii_letters}
    expr = parse_expr(python, local_dict=symbols, transformations=TRANSFORMATIONS, evaluate=False)
    return expr if isinstance(expr, sympy.Expr) else None


def _python_expression(latex: str) -> str:
    """`\\frac{1}{\\sqrt{2}}` -> `((1)/(sqrt(2)))`; raises ValueError on LaTeX it does not know."""
    out, index = [], 0
    while index < len(latex):
        char = latex[index]
        if char == "\\":
            piece, index = _python_command(latex, index)
            out.append(piece)
        elif char in "^{":
            argument, index = _python_argument(latex, index + (char == "^"))
            out.append(f"**({argument})" if char == "^" else f"({argument})")
        elif char == "}":
            raise ValueError("unbalanced brace")
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _python_command(latex: str, index: int) -> tuple[str, int]:
    command = COMMAND.match(latex, index)
    if command is None:
        raise ValueError("a lone backslash")
    name, index = command.group(1), command.end()
    if name == "frac":
        numerator, index = _python_argument(latex, index)
        denominator, index = _python_argument(latex, index)
        return f"(({numerator})/({denominator}))", index
    if name == "sqrt":
        root = None
        if latex.startswith("[", index) and "]" in latex[index:]:
            close = latex.index("]", index)
            root, index = _python_expression(latex[index + 1:close]), close + 1
        radicand, index = _python_argument(latex, index)
        return (f"sqrt({radicand})" if root is None else f"(({radicand})**(1/({root})))"), index
    if name in COMMAND_WORDS:
        return COMMAND_WORDS[name], index
    raise ValueError(f"unknown command \\{name}")


def _python_argument(latex: str, index: int) -> tuple[str, int]:
    argument = _argument(latex, index)
    if argument is None:
        raise ValueError("missing argument")
    return _python_expression(argument[0]), argument[1]
