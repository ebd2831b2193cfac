"""Reading the files a user gives (specs, cluster configs, prompt libraries, data files): one
guarded path, so every reader refuses the same things with one line naming the file.

- Text is UTF-8; a byte-order mark (which some editors write) is accepted and dropped. Any other
  encoding (latin-1, UTF-16) is named, never guessed.
- YAML: a key given twice in one mapping is an error (PyYAML would keep the last one silently),
  and aliases may not expand a document past `MAX_YAML_NODES` nodes (a few nested anchors can
  otherwise expand to billions of entries when the document is validated).

It lives in the storage layer, the bottom of the core, so that storage and the data-set readers
both use it.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml


class InputError(ValueError):
    """Bad input a user gave (a file, a field, a flag, a location); the message names it. Every
    command turns one into a one-line error and exit code 2."""


# A study spec has a few hundred nodes; the shipped paper grid about 400.
MAX_YAML_NODES = 100_000


def read_text_file(path: Path, error: type[InputError] = InputError, what: str = "file") -> str:
    """A file's text: UTF-8, a leading byte-order mark dropped; `error` names the file otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, not a {what}") from None
    except PermissionError:
        raise error(f"{path}: cannot read the {what}: permission denied") from None
    except OSError as os_error:
        raise error(f"{path}: cannot read the {what}: {os_error.strerror or os_error}") from None
    return decode_text(data, str(path), error)


def decode_text(data: bytes, source: str, error: type[InputError] = InputError) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise error(f"{source}: not UTF-8 text (it starts with a UTF-16 byte-order mark): save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as decode_error:
        line = data[: decode_error.start].count(b"\n") + 1
        raise error(f"{source}: not UTF-8 text (byte {data[decode_error.start]:#04x} on line {line}; "
                    "latin-1 or another encoding?): save it as UTF-8") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a repeated key and an alias expansion past MAX_YAML_NODES."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice in one mapping (line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes in the document once every alias is expanded (each shared node counted once per use)."""
    if id(node) in sizes:
        return sizes[id(node)]
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load_yaml(text: str, source: str, error: type[InputError] = InputError) -> Any:
    """One YAML document, strictly: a repeated key or a runaway alias expansion is `error`."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise error(f"{source}: its aliases (*name) expand to more than {MAX_YAML_NODES:,} entries")
        return loader.construct_document(node)
    except yaml.YAMLError as yaml_error:
        raise error(f"{source}: not valid YAML: {yaml_error}") from None
    finally:
        loader.dispose()
