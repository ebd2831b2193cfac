"""`key.path=value` overrides of a spec's YAML (as torchtune, LLaMA-Factory and Hydra take them):

    cotstudy run spec.yaml training.epochs=1 students[0].name=x evaluation.test_size=null

A value is read as YAML (`1` an int, `0.5` a float, `true` a bool, `null` None, `[1, 2]` a list,
`{kind: sft}` a mapping); the spec is then validated as a whole, as if the file had said it, so a
name that is no field or a value of the wrong type is the same one-line error as in the file.
This module only edits the raw mapping; study.core.spec validates it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import yaml

# one step of a key path: a name, or an index in brackets
_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


class OverrideError(ValueError):
    """An override that is not `key.path=value`, or whose path cannot be followed in the spec."""


@dataclass(frozen=True)
class Override:
    text: str  # as given, for error messages
    path: tuple[str | int, ...]
    value: Any

    @property
    def key(self) -> str:
        """The key path as error messages write field paths (`students[0].name`)."""
        return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in self.path).lstrip(".")


def parse_override(text: str) -> Override:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise OverrideError(f"override '{text}': expected key.path=value (e.g. training.epochs=1)")
    return Override(text, _key_path(text, key), _value(text, value))


def _key_path(text: str, key: str) -> tuple[str | int, ...]:
    path: list[str | int] = []
    for part in key.split("."):
        steps = list(_STEP.finditer(part))
        if not part or "".join(step.group(0) for step in steps) != part or steps[0].group(2) is not None:
            raise OverrideError(f"override '{text}': '{key}' is not a key path (names and [index], joined by '.')")
        path += [step.group(1) if step.group(1) is not None else int(step.group(2)) for step in steps]
    return tuple(path)


def _value(text: str, value: str) -> Any:
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise OverrideError(f"override '{text}': the value is not valid YAML: {error}") from None


def override_of(field_path: str, overrides: list[Override]) -> Override | None:
    """The last override that set `field_path` or a field above it (the one an error there is about)."""
    for override in reversed(overrides):
        if field_path == override.key or field_path.startswith((f"{override.key}.", f"{override.key}[")):
            return override
    return None


def apply_overrides(raw: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """A copy of the spec's mapping with each override set, in order. A missing mapping on the way
    is created (the schema then says whether its keys exist); a list index must exist."""
    changed = copy.deepcopy(raw)
    for override in overrides:
        _set(changed, override)
    return changed


def _set(raw: dict[str, Any], override: Override) -> None:
    node: Any = raw
    for depth, step in enumerate(override.path[:-1]):
        following = override.path[depth + 1]
        node = _child(node, step, override, create={} if isinstance(following, str) else None)
    last = override.path[-1]
    _check_step(node, last, override)
    node[last] = override.value


def _child(node: Any, step: str | int, override: Override, create: dict | None) -> Any:
    _check_step(node, step, override)
    if isinstance(step, str) and node.get(step) is None and create is not None:
        node[step] = create
    return node[step]


def _check_step(node: Any, step: str | int, override: Override) -> None:
    if isinstance(step, int):
        if not isinstance(node, list) or step >= len(node):
            size = f"a list of {len(node)}" if isinstance(node, list) else f"not a list ({type(node).__name__})"
            raise OverrideError(f"override '{override.text}': no item [{step}] where the spec has {size}")
    elif not isinstance(node, dict):
        raise OverrideError(f"override '{override.text}': '{step}' is under a {type(node).__name__}, not a mapping")
