"""Read an uploaded dataset (CSV with a header row, or JSONL with one object per line), row by row.

A CSV needs a ``text`` column, or ``clean``, ``corrupted``, ``target`` and ``distractor`` columns (extra
columns are ignored); a JSONL line is an object with the same keys. Every bad row gets a ``RowProblem``
naming the row and what is wrong, and the good rows are kept. Problems with the whole file (too big, not
UTF-8, no usable column, no good row) raise ``DatasetError``.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import PurePath

from analysis.datasets import PAIR_FIELDS, Dataset, DatasetError, from_rows

MAX_UPLOAD_BYTES = 5_000_000
MAX_ROWS = 10_000
MAX_ROW_CHARS = 4_000
FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class RowProblem:
    """Why one row of the file was left out. ``row`` counts data rows from 1; ``line`` is the file line."""

    row: int
    line: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row} (line {self.line}): {self.message}"


@dataclass(frozen=True)
class ParsedDataset:
    """The good rows as a dataset, and a problem per bad row."""

    dataset: Dataset
    problems: tuple[RowProblem, ...]


def file_format(file_name: str) -> str:
    """'csv' or 'jsonl' from the file name; raises DatasetError for anything else."""
    suffix = PurePath(file_name).suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix == "csv":
        return "csv"
    raise DatasetError(f"'{file_name}' is not a .csv or .jsonl file: upload a CSV with a header row or JSONL "
                       "with one object per line.")


def _decode(data: bytes) -> str:
    if len(data) > MAX_UPLOAD_BYTES:
        raise DatasetError(f"The file has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}. Split it.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"The file is not UTF-8 text (byte {error.start} cannot be read); save it as UTF-8.") \
            from None


def _columns(keys: list[str]) -> tuple[str, ...]:
    """The fields rows of this file carry: ('text',) or the four pair fields; raises DatasetError."""
    present = {key.strip().lower() for key in keys if key}
    if "text" in present:
        return ("text",)
    if "clean" in present:
        missing = [field for field in PAIR_FIELDS if field not in present]
        if missing:
            raise DatasetError(f"Patching rows need the columns {', '.join(PAIR_FIELDS)}; missing: "
                               f"{', '.join(missing)}.")
        return PAIR_FIELDS
    found = ", ".join(sorted(present)[:8]) or "none"
    raise DatasetError(f"The file needs a 'text' column, or the columns {', '.join(PAIR_FIELDS)} for "
                       f"patching (found: {found}).")


def check_row(values: dict, fields: tuple[str, ...]) -> tuple[dict[str, str] | None, str | None]:
    """The row reduced to ``fields`` with string values, or a message saying what is wrong with it."""
    lowered = {str(key).strip().lower(): value for key, value in values.items() if key is not None}
    row: dict[str, str] = {}
    for field in fields:
        value = lowered.get(field)
        if value is None:
            return None, f"'{field}' is missing"
        if not isinstance(value, str):
            return None, f"'{field}' is a {type(value).__name__}, not a string"
        if not value.strip():
            return None, f"'{field}' is empty"
        if len(value) > MAX_ROW_CHARS:
            return None, f"'{field}' has {len(value):,} characters (limit {MAX_ROW_CHARS:,})"
        row[field] = value
    return row, None


def _csv_rows(text: str):
    """(row, line, values dict or None, message) per data row; the header decides the fields."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError("The file is empty.") from None
    except csv.Error as error:
        raise DatasetError(f"The header row cannot be read as CSV ({error}).") from None
    fields = _columns(header)
    row_number = 0
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            row_number += 1
            yield fields, row_number, line, None, f"not valid CSV ({error})"
            continue
        if not any(cell.strip() for cell in cells):
            continue
        row_number += 1
        if len(cells) != len(header):
            yield fields, row_number, line, None, f"has {len(cells)} field{'s' if len(cells) != 1 else ''}; the header has {len(header)}"
            continue
        yield fields, row_number, line, dict(zip(header, cells)), None


def _jsonl_rows(text: str):
    """(fields, row, line, values or None, message) per non-blank line; the first object decides the fields."""
    fields: tuple[str, ...] | None = None
    row_number = 0
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        row_number += 1
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as error:
            yield fields, row_number, line, None, f"not valid JSON ({error.msg} at column {error.colno})"
            continue
        if not isinstance(value, dict):
            yield fields, row_number, line, None, (f"is a JSON {type(value).__name__}, not an object like "
                                                   '{"text": "..."}')
            continue
        if fields is None:
            fields = _columns(list(value))
        yield fields, row_number, line, value, None


def parse_dataset(file_name: str, data: bytes) -> ParsedDataset:
    """Parse an uploaded file into its good rows and a problem per bad row; raises DatasetError."""
    text = _decode(data)
    rows_of = _csv_rows if file_format(file_name) == "csv" else _jsonl_rows
    good: list[dict[str, str]] = []
    problems: list[RowProblem] = []
    dropped: list[tuple[int, int]] = []  # (row, line) past MAX_ROWS
    for fields, row_number, line, values, message in rows_of(text):
        if values is not None and fields is not None:
            row, message = check_row(values, fields)
            if row is not None:
                if len(good) < MAX_ROWS:
                    good.append(row)
                else:
                    dropped.append((row_number, line))
                continue
        problems.append(RowProblem(row_number, line, message or "unreadable"))
    if dropped:
        problems.append(RowProblem(*dropped[0], f"this and the next {len(dropped) - 1:,} rows were left out: a "
                                                f"dataset holds at most {MAX_ROWS:,} rows"))
    if not good:
        first = f" First problem: {problems[0]}." if problems else ""
        raise DatasetError(f"No usable row in '{file_name}'.{first}")
    return ParsedDataset(from_rows(PurePath(file_name).name, good), tuple(problems))


def dataset_jsonl(dataset: Dataset) -> str:
    """The dataset as JSONL, one row object per line (what ``parse_dataset`` reads back)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in dataset.rows())
