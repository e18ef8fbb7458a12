"""Bad-input cases shared by the fuzz tests and ``docs/errors.md``.

Each ``test_fuzz_*.py`` module keeps a list ``ERROR_CASES`` of :class:`Case` rows: an
input, the exception it must raise and the start of the message. The tests run every
row; ``docs/errors.md`` shows the same rows as tables between ``<!-- cases: AREA -->``
markers, and ``test_fuzz_tree.py::test_docs_errors_table_is_in_sync`` fails when they
drift. To refresh the tables after editing a list::

    python tests/errors_doc.py          # rewrites the generated parts of docs/errors.md
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any, Callable, Dict, List, Optional

import attrs
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "docs", "errors.md")
MODULES = ("test_fuzz_layers", "test_fuzz_losses", "test_fuzz_optim", "test_fuzz_tree", "test_validation")


@attrs.frozen
class Case:
    """One bad input: ``call()`` must raise ``exc`` with a message starting with ``starts``."""

    area: str  # table the row goes to, e.g. "layers"
    what: str  # the call and the bad input, in words or code
    call: Callable[[], Any]
    exc: type
    starts: str

    def check(self) -> None:
        with pytest.raises(self.exc) as info:
            self.call()
        assert type(info.value) is self.exc, f"{self.what}: got {type(info.value).__name__}: {info.value}"
        msg = str(info.value)
        assert msg.startswith(self.starts), f"{self.what}: message {msg!r} does not start with {self.starts!r}"

    @property
    def id(self) -> str:
        return f"{self.area}: {self.what}"


def assert_named(err: BaseException, where: str, arg: Optional[str] = None) -> None:
    """``err`` is a plain ValueError/TypeError whose message starts with ``where`` (and names ``arg``)."""
    assert type(err) in (ValueError, TypeError), f"{type(err).__name__}: {err}"
    msg = str(err)
    assert msg.startswith(where), f"message does not start with {where!r}: {msg!r}"
    if arg is not None:
        assert arg in msg, f"message does not name the argument {arg!r}: {msg!r}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(cases: List[Case]) -> str:
    """The markdown table of ``cases`` (one area)."""
    lines = ["| input | raises | message starts with |", "|---|---|---|"]
    for c in cases:
        lines.append(f"| `{_cell(c.what)}` | {c.exc.__name__} | `{_cell(c.starts)}` |")
    return "\n".join(lines)


def all_cases() -> Dict[str, List[Case]]:
    """Every module's ``ERROR_CASES`` grouped by area, in module order."""
    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    by_area: Dict[str, List[Case]] = {}
    for name in MODULES:
        for case in importlib.import_module(name).ERROR_CASES:
            by_area.setdefault(case.area, []).append(case)
    return by_area


_BLOCK = re.compile(r"<!-- cases: (?P<area>[\w ]+) -->\n(?P<body>(?:(?!<!-- cases:).)*?)<!-- end cases -->", re.S)


def synced(doc: str) -> str:
    """``doc`` with every generated table replaced by the current cases."""
    cases = all_cases()

    def table(m: re.Match[str]) -> str:
        area = m.group("area")
        return f"<!-- cases: {area} -->\n{render(cases.get(area, []))}\n<!-- end cases -->"

    return _BLOCK.sub(table, doc)


def areas_in(doc: str) -> List[str]:
    return [m.group("area") for m in _BLOCK.finditer(doc)]


if __name__ == "__main__":
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    new = synced(text)
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(new)
    print(f"{DOC}: {'updated' if new != text else 'already in sync'}")
