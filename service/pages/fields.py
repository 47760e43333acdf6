"""Which form fields an error is about, from its structured locations (never from the words of its message).

``fields_of(error)`` reads the error's :class:`~workflow.errors.Problem` s and the ``fields`` of its unmet
criteria — paths in the stage records' terms (``("items", 1, "measure")``, ``("scores", "A1")``,
``("tally", "ballots")``) — and names the branch page's inputs for them (``measure_2``, ``s_A1``,
``ballots``), so the page can mark them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from workflow.errors import BranchflowError, Loc

# Record paths whose form input has another name.
RENAMED: dict[tuple[str, ...], str] = {
    ("tally", "ballots"): "ballots",
    ("tally", "rating"): "rating",
    ("tally", "satisfaction_members"): "sat_members",
    ("tally", "satisfaction_secretary"): "sat_secretary",
}
TRANSPARENT = ("data", "body")  # the API's wrappers: data.text is the record's text


def form_field(loc: Sequence[str | int]) -> str | None:
    """The branch page's input for a record path; ``None`` for the whole record."""
    parts = list(loc)
    while parts and parts[0] in TRANSPARENT:
        parts = parts[1:]
    if not parts:
        return None
    head = parts[0]
    if head == "scores" and len(parts) > 1:
        return f"s_{parts[1]}"
    if head == "findings" and len(parts) > 1:
        return f"n_{parts[1]}" if parts[2:3] == ["note"] else f"f_{parts[1]}"
    if head == "items" and len(parts) > 2 and isinstance(parts[1], int):
        return f"{parts[2]}_{parts[1] + 1}"
    if head == "items" and len(parts) > 1 and isinstance(parts[1], int):
        return f"problem_{parts[1] + 1}"
    named = RENAMED.get(tuple(str(p) for p in parts[:2]))
    return named or str(head)


def _locations(error: BranchflowError) -> Iterable[Loc]:
    for p in error.problems:
        yield p.loc
    for u in getattr(error, "unmet", ()):
        yield from getattr(u, "fields", ())


def fields_of(error: BranchflowError) -> set[str]:
    """The form fields ``error`` is about (its problems' and unmet criteria's locations)."""
    return {f for loc in _locations(error) if (f := form_field(loc))}


def form_label(name: str) -> str:
    """The Chinese name of a branch page input (``measure_2`` → 第 2 项整改事项的“主要整改措施”)."""
    from states.labels import label_of

    head, _, tail = name.rpartition("_")
    if name.startswith("s_"):
        return label_of(("scores", name[2:]))
    if name.startswith(("f_", "n_")):
        return label_of(("findings", name[2:], *(("note",) if name.startswith("n_") else ())))
    if tail.isdigit() and head in ("problem", "measure", "due", "contact"):
        return label_of(("items", int(tail) - 1, head))
    inverse = {v: k for k, v in RENAMED.items()}
    return label_of(inverse.get(name, (name[:32],)))
