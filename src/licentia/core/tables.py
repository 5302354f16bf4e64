"""Tables as CSV that a spreadsheet opens safely.

Cells often hold text a client chose (user names, host names): a cell that starts like
a formula (``=``, ``+``, ``-``, ``@``, a tab or a carriage return) would run as one in
a spreadsheet, so it gets a leading ``'``, and line breaks (which would split the row)
become spaces. Numbers stay numbers. No I/O: the caller writes the text where it goes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["BLOCK_CHARS", "FORMULA_STARTS", "csv_blocks", "rows_to_csv", "spreadsheet_safe"]

#: what a spreadsheet reads as the start of a formula
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading formula character gets a ``'``,
    and line breaks become spaces. Anything that is not text is returned as it is."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS):
        value = "'" + value
    return value.replace("\r", " ").replace("\n", " ")


#: about how many characters a CSV stream writes at a time (whole lines)
BLOCK_CHARS = 1 << 16


def csv_blocks(rows: Iterable[Mapping[str, Any]], fields: Sequence[str], size: int = BLOCK_CHARS) -> Iterator[str]:
    """The header line, then one line per row (``fields`` in order; a missing field is an
    empty cell; other keys are left out), each cell made spreadsheet-safe, given as blocks
    of whole lines of about ``size`` characters: a stream writes a block at a time, not a
    line. Lazy: a long table is written as it is read."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(name, "")) for name in fields])
        if buf.tell() >= size:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    if buf.tell():
        yield buf.getvalue()


def rows_to_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """The whole table as one CSV text (see ``csv_blocks``)."""
    return "".join(csv_blocks(rows, fields))
