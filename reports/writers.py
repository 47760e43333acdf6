"""Writers: a form and its rows → XLSX (openpyxl write-only), CSV (UTF-8 with BOM) or printable HTML.

Each writer yields bytes as it goes; rows are never collected. Exports are inert: a text cell that a
spreadsheet would read as a formula or a command (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return, OWASP's CSV-injection list) is written as text — in CSV with a leading ``'``, in XLSX as
a string cell (``data_type 's'``, never ``'f'``). Numbers we compute stay numbers. The XLSX writer uses openpyxl's
write-only mode (rows go to a temporary file as they are appended) and streams the finished file from
a spooled temporary file.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from copy import copy

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reports.forms import Cell, Form, Row
from workflow.resources import template_dir

TEMPLATES = template_dir("reports")
CHUNK = 64 * 1024
HEADER_ROW = 4  # title, two note lines, then the header


def text(v: Cell) -> str:
    """How a cell reads in CSV and HTML: numbers without a needless ``.0``, nothing for empty."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(v: str) -> str:
    """Text that no spreadsheet evaluates: a ``'`` before a formula-like start (CSV)."""
    return "'" + v if v.startswith(FORMULA_STARTS) else v


def csv_cell(v: Cell) -> str:
    return inert(text(v)) if isinstance(v, str) else text(v)


# --- CSV --------------------------------------------------------------------------------------------

def write_csv(form: Form, rows: Iterable[Row]) -> Iterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")

    def flush() -> bytes:
        data = buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
        return data

    yield "\ufeff".encode()  # the BOM Excel needs to read UTF-8
    w.writerow([inert(form.title)])
    notes = form.notes[:HEADER_ROW - 2]
    for line in notes + [""] * (HEADER_ROW - 2 - len(notes)):  # the header is on line 4, as in the XLSX
        w.writerow([inert(line)] if line else [])
    w.writerow([inert(c.header) for c in form.columns])
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
        if buf.tell() >= CHUNK:
            yield flush()
    for row in form.footer():
        w.writerow([csv_cell(v) for v in row])
    yield flush()


# --- XLSX -------------------------------------------------------------------------------------------

_thin = Side(style="thin", color="000000")
_BORDER = Border(left=_thin, right=_thin, top=_thin, bottom=_thin)
_TITLE = Font(name="宋体", size=16, bold=True)
_BOLD = Font(name="宋体", size=11, bold=True)
_PLAIN = Font(name="宋体", size=11)
_HEAD_FILL = PatternFill("solid", fgColor="E7E6E6")
_CENTER = Alignment(horizontal="center", vertical="center", wrap_text=True)
_WRAP = Alignment(vertical="center", wrap_text=True)
_MIDDLE = Alignment(vertical="center")


def _setup(ws: Worksheet, form: Form) -> None:
    for i, col in enumerate(form.columns, 1):
        ws.column_dimensions[get_column_letter(i)].width = col.width
    ws.freeze_panes = f"A{HEADER_ROW + 1}"
    ws.page_setup.paperSize = Worksheet.PAPERSIZE_A4
    ws.page_setup.orientation = "landscape" if form.landscape else "portrait"
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages tall as needed, one page wide
    ws.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
    ws.print_options.horizontalCentered = True
    ws.page_margins.left = ws.page_margins.right = 0.5
    last = get_column_letter(len(form.columns))
    for r in range(1, HEADER_ROW):
        ws.merged_cells.add(f"A{r}:{last}{r}")


def write_xlsx(form: Form, rows: Iterable[Row]) -> Iterator[bytes]:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(form.label[:31])
    _setup(ws, form)

    def styled(font: Font = _PLAIN, align: Alignment = _MIDDLE, border: bool = True,
               fill: PatternFill | None = None) -> WriteOnlyCell:
        c = WriteOnlyCell(ws)
        c.font = font
        c.alignment = align
        if border:
            c.border = _BORDER
        if fill is not None:
            c.fill = fill
        return c

    def cell(value: Cell, template: WriteOnlyCell) -> WriteOnlyCell:
        # Setting font/border/alignment hashes style objects (slow); copying a template's style ids is not.
        c = WriteOnlyCell(ws, value=value)
        c._style = copy(template._style)
        if isinstance(value, str):
            c.data_type = "s"  # openpyxl would store a str starting with "=" as a live formula ('f')
        return c

    ws.append([cell(form.title, styled(_TITLE, _CENTER, border=False))])
    note = styled(border=False)
    for line in form.notes[:HEADER_ROW - 2]:
        ws.append([cell(line, note)])
    for _ in range(HEADER_ROW - 2 - len(form.notes)):
        ws.append([])
    head = styled(_BOLD, _CENTER, fill=_HEAD_FILL)
    ws.append([cell(c.header, head) for c in form.columns])
    aligns = [_CENTER if c.number and c.width < 8 else (_WRAP if c.wrap else _MIDDLE) for c in form.columns]
    body = [styled(_PLAIN, a) for a in aligns]
    foot = [styled(_BOLD, a) for a in aligns]
    for row in rows:
        ws.append([cell(v, t) for v, t in zip(row, body)])
    for row in form.footer():
        ws.append([cell(v, t) for v, t in zip(row, foot)])
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as f:
        wb.save(f)
        f.seek(0)
        while chunk := f.read(CHUNK):
            yield chunk


# --- HTML -------------------------------------------------------------------------------------------

_env: Environment | None = None


def environment() -> Environment:
    global _env
    if _env is None:
        _env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "svg"]),
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        _env.filters["cell"] = text
    return _env


def write_html(form: Form, rows: Iterable[Row]) -> Iterator[bytes]:
    template = environment().get_template("form.html")
    buf: list[str] = []
    size = 0
    for piece in template.generate(form=form, rows=rows):
        buf.append(piece)
        size += len(piece)
        if size >= CHUNK:
            yield "".join(buf).encode("utf-8")
            buf, size = [], 0
    yield "".join(buf).encode("utf-8")


WRITERS = {"xlsx": write_xlsx, "csv": write_csv, "html": write_html}
MEDIA_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
