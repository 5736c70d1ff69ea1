"""Reading TOML into validated models, with every problem named by file and dotted key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mapping.errors import SpecError

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; unreadable or malformed files become a SpecError naming the line."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise SpecError(str(path), [("", "file not found")]) from None
    except OSError as exc:
        raise SpecError(str(path), [("", f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), [("", f"TOML syntax error: {exc}")]) from None


def dotted(loc: tuple[int | str, ...]) -> str:
    """``("sources", "snow", "url")`` -> ``sources.snow.url``; list indexes as ``[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """One (key, message) per pydantic error, without echoing input values (secrets)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(
            p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))
        )
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        problems.append((dotted(loc), message))
    return problems


def validate(model: type[M], data: dict[str, Any], path: Path) -> M:
    """Build ``model`` from parsed TOML or raise SpecError listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(str(path), validation_problems(exc)) from None
