"""Eval stage, cases: a pydantic validation error of a case file, worded for the person who wrote the file."""

from __future__ import annotations

_MODELS = {
    "CaseEntry": "a mapping with id, question, answers and evidence",
    "Message": "a mapping with role and content",
}
_TYPES = {"valid string": "text", "valid tuple": "a list", "valid list": "a list", "valid dictionary": "a mapping"}


def _field_name(loc: tuple) -> str:
    """('history', 0, 'role') -> 'history[0].role'; ('thresholds', 'answer') -> 'thresholds.answer'."""
    name = ""
    for part in loc:
        if part != "[key]":  # pydantic's mark of a mapping key (rather than its value)
            name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name


def _problem(error: dict) -> str:
    """What one pydantic error says is wrong, worded to follow a field name."""
    kind, msg = error["type"], error["msg"]
    if kind == "missing":
        hint = " (use 'answers: []' when the assistant must refuse)" if error["loc"] == ("answers",) else ""
        return f"is missing{hint}"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind == "model_type":
        return f"must be {_MODELS.get(error['ctx']['class_name'], 'a mapping')}, not {error['input']!r}"
    if msg.startswith("Input should be "):
        wanted = msg.removeprefix("Input should be ")
        if wanted.startswith("a valid "):
            wanted = wanted.split(",")[0]  # "a valid number, unable to parse string as a number"
        for pydantic_word, word in _TYPES.items():
            wanted = wanted.replace(f"a {pydantic_word}", word).replace(pydantic_word, word)
        return f"must be {wanted}, not {error['input']!r}"
    return msg[:1].lower() + msg[1:]


def describe_error(error: dict, fields: tuple[str, ...]) -> str:
    """One pydantic error of a case or the header (loc relative to it) as "field 'x' must be ..."."""
    loc = error["loc"]
    if error["type"] == "extra_forbidden" and len(loc) == 1:
        return f"unknown field {loc[0]!r} (fields: {', '.join(fields)})"
    problem = _problem(error)
    if not loc:
        return problem
    separator = " " if problem.startswith(("must ", "is ", "holds ")) else ": "
    return f"field {_field_name(loc)!r}{separator}{problem}"
