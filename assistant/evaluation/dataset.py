"""Evaluation data sets: JSONL, one question a line, validated into `EvalItem`s.

Format (field names fixed)::

    {"id": "q01", "question": "Combien de pays ont signé la déclaration ?",
     "must_include": [["61", "soixante et un"], ["58"]],
     "sources": ["sommet-ia-paris-declaration.txt"], "answerable": true,
     "lang": "fr", "history": ["Qu'est-ce que le sommet de Paris ?"], "type": "conflict"}

`follow_up` (optional) says whether the question needs its `history` to be understood; the report then
scores the chain's decision to rewrite it (`follow_up_detection`).

Unknown fields are rejected (a typo like "must_inlcude" would otherwise silently disable a check);
free-form data goes in "meta".
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class DatasetError(ValueError):
    """A data set that cannot be used; the message lists every bad line."""


class EvalItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    must_include: list[list[str]] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    answerable: bool = True
    lang: str | None = None
    history: list[str] = Field(default_factory=list)
    # whether the question depends on its history (None: not said); when set, the rewrite decision is scored
    follow_up: bool | None = None
    type: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("question")
    @classmethod
    def _question_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is blank")
        return value

    @field_validator("must_include", mode="before")
    @classmethod
    def _groups(cls, value: Any) -> Any:
        """A bare string in the list is a group of one alternative: ["61", ["58", "cinquante-huit"]]."""
        if isinstance(value, list):
            return [[item] if isinstance(item, str) else item for item in value]
        return value

    @field_validator("must_include")
    @classmethod
    def _no_empty_groups(cls, value: list[list[str]]) -> list[list[str]]:
        for i, group in enumerate(value):
            if not group or not any(alt.strip() for alt in group):
                raise ValueError(f"group {i} is empty (an empty group can never match)")
        return value

    @model_validator(mode="after")
    def _unanswerable_has_no_content_check(self) -> "EvalItem":
        if not self.answerable and self.must_include:
            raise ValueError("must_include must be empty when answerable is false (the right answer is to decline)")
        return self


def parse_line(line: str) -> EvalItem:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return EvalItem.model_validate(data)


def _describe(error: ValidationError) -> str:
    parts = []
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"]) or "item"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def load_items(lines: list[str], name: str = "<dataset>") -> list[EvalItem]:
    """Validate every line; raise one `DatasetError` listing all problems as `name:line: message`."""
    items: list[EvalItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = parse_line(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{name}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        except ValidationError as exc:
            problems.append(f"{name}:{lineno}: {_describe(exc)}")
            continue
        except ValueError as exc:
            problems.append(f"{name}:{lineno}: {exc}")
            continue
        if item.id in seen:
            problems.append(f"{name}:{lineno}: duplicate id {item.id!r} (first on line {seen[item.id]})")
            continue
        seen[item.id] = lineno
        items.append(item)
    if problems:
        raise DatasetError(f"{len(problems)} invalid line(s) in {name}:\n" + "\n".join(problems))
    if not items:
        raise DatasetError(f"{name} holds no questions")
    return items


def load_dataset(path: str | Path) -> list[EvalItem]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"data set not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc}") from None
    return load_items(text.splitlines(), name=str(path))


def write_dataset(items: list[EvalItem], path: str | Path) -> None:
    """One compact JSON object per line, UTF-8, default-valued optional fields left out."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            data = item.model_dump(exclude_defaults=True)
            data.setdefault("must_include", [])
            data.setdefault("sources", [])
            data["answerable"] = item.answerable
            f.write(json.dumps(data, ensure_ascii=False) + "\n")
