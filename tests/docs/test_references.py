"""The generated reference pages say what the code says now: the CLI, the configuration, the
HTTP API and the metrics. After a deliberate change, write them again with
``.venv/bin/python -m tests.docs.references`` and commit them with the change."""

from __future__ import annotations

import pytest

from tests.docs.references import PAGES, REFERENCE


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_generated_reference_page_matches_the_code(page: str) -> None:
    """The page on disk is exactly what the generator makes from the code now."""
    assert (REFERENCE / page).read_text() == PAGES[page](), (
        f"docs/reference/{page} is out of date: run .venv/bin/python -m tests.docs.references"
    )


def test_the_package_names_concepts_not_the_lesson_it_grew_from() -> None:
    """No comment or docstring in src/ points at "the seed", a document the package does not
    ship (the one ``seed`` left is llama.cpp's sampling parameter)."""
    source = REFERENCE.parents[1] / "src"
    found = [
        f"{path.relative_to(source)}:{n}"
        for path in sorted(source.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "seed" in line.lower() and line.strip() != '"seed",'
    ]
    assert found == []
