"""The suite's own shape: test modules share helpers through tests/_support only."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent
#: An import of a conftest file or of another test module, in either spelling.
FORBIDDEN = re.compile(
    r"^\s*(?:from|import)\s+tests(?:\.\w+)*\.(?:conftest|test_\w+)\b", re.MULTILINE
)


def test_no_module_imports_a_conftest_or_another_test_module() -> None:
    """Helpers come from tests._support: no file imports a conftest or a test module."""
    offenders = [
        f"{path.relative_to(TESTS)}: {match.group(0).strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        for match in FORBIDDEN.finditer(path.read_text())
    ]
    assert offenders == []


def test_the_check_sees_an_offending_import() -> None:
    """The pattern above catches both spellings, so the first test cannot pass vacuously."""
    assert FORBIDDEN.search("from tests.gateway.conftest import register")
    assert FORBIDDEN.search("from tests.routing.test_filters import fleet")
    assert not FORBIDDEN.search("from tests._support.gateways import register")
