"""harness/tables.py: one column specification, rendered as GitHub Markdown or LaTeX booktabs."""

from __future__ import annotations

import pytest

from harness.tables import Column, render

COLUMNS = [Column("name", lambda r: r["name"]), Column("mAP", lambda r: f"{r['mAP']:.1f}")]
RECORDS = [{"name": "a|b", "mAP": 71.25}, {"name": "two\nlines", "mAP": 7.0}]


def test_markdown_escapes_pipes_and_keeps_cells_verbatim() -> None:
    lines = render(COLUMNS, RECORDS, "github").splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["name", "mAP"]
    assert "a\\|b" in lines[2] and "71.2" in lines[2]  # the cell's own rounding, not tabulate's number parsing
    assert "two lines" in lines[3] and "7.0" in lines[3]


def test_latex_is_booktabs_from_the_same_columns() -> None:
    latex = render(COLUMNS, RECORDS[:1], "latex_booktabs")
    assert "\\toprule" in latex and "\\bottomrule" in latex
    assert "name" in latex and "71.2" in latex


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown table format 'html'"):
        render(COLUMNS, RECORDS, "html")
