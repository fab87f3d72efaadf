"""Tables as column specifications: one :class:`Column` list a table, rendered by tabulate as GitHub Markdown
(the report) or LaTeX booktabs (``results/tables/*.tex``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

__all__ = ["Column", "render"]

FORMATS = ("github", "latex_booktabs")


@dataclass(frozen=True)
class Column:
    """One column: its header and the cell it shows for a record."""

    header: str
    cell: Callable[[Mapping[str, Any]], Any]


def _render_rows(headers: Sequence[str], rows: Iterable[Sequence[Any]], tablefmt: str) -> str:
    """``rows`` under ``headers`` in ``tablefmt`` (one of :data:`FORMATS`); cells are shown verbatim (no number
    parsing). In Markdown, pipes are escaped and line breaks become spaces; LaTeX escaping is tabulate's."""
    if tablefmt not in FORMATS:
        raise ValueError(f"unknown table format {tablefmt!r}; choose one of {FORMATS}")
    if tablefmt == "github":

        def cell(value: Any) -> str:
            return str(value).replace("|", "\\|").replace("\n", " ")

        headers = [cell(h) for h in headers]
        rows = [[cell(v) for v in row] for row in rows]
    return tabulate(list(rows), headers=list(headers), tablefmt=tablefmt, disable_numparse=True)


def render(columns: Sequence[Column], records: Iterable[Mapping[str, Any]], tablefmt: str) -> str:
    """One row a record, one cell a column, in ``tablefmt`` (see :func:`_render_rows`)."""
    return _render_rows([c.header for c in columns], [[c.cell(r) for c in columns] for r in records], tablefmt)
