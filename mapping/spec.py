"""The field/value map TOML of one source: how its records become canonical ITIL records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mapping.errors import SpecError
from mapping.model import KINDS, KindSchema
from mapping.periods import ZoneName
from mapping.tomlfile import read_toml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KindMap(_Strict):
    """How one source stream becomes one canonical kind."""

    stream: str
    fields: dict[str, str | list[str]]
    values: dict[str, dict[str, str]] = Field(default_factory=dict)

    def source_fields(self) -> list[str]:
        """Source field names this map reads: what the connector must request."""
        names: list[str] = []
        for spec in self.fields.values():
            names.extend([spec] if isinstance(spec, str) else spec)
        return list(dict.fromkeys(names))


class MappingSpec(_Strict):
    """A source's mapping file. ``version`` is stamped on every record and metric value."""

    version: str = Field(min_length=1)
    datetime_format: str = "%Y-%m-%d %H:%M:%S"
    timezone: ZoneName = "UTC"
    incident: KindMap | None = None

    @model_validator(mode="after")
    def _fields_exist(self) -> MappingSpec:
        problems: list[str] = []
        for kind_name, kind_map in self.kind_maps().items():
            problems.extend(_check_kind(KINDS[kind_name], kind_map))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def kind_maps(self) -> dict[str, KindMap]:
        return {name: m for name in KINDS if (m := getattr(self, name)) is not None}

    def for_stream(self, stream: str) -> tuple[str, KindMap] | None:
        """The canonical kind a stream maps into, if the mapping covers it."""
        for name, kind_map in self.kind_maps().items():
            if kind_map.stream == stream:
                return name, kind_map
        return None


def _check_kind(schema: KindSchema, kind_map: KindMap) -> list[str]:
    problems = []
    for name in kind_map.fields:
        if name not in schema.fields:
            problems.append(f"{schema.name}.fields.{name}: not a canonical {schema.name} field")
    for name, table in kind_map.values.items():
        if schema.fields.get(name) != "code":
            problems.append(f"{schema.name}.values.{name}: only coded fields take a value map")
            continue
        allowed = schema.standard_values[name]
        for original, standard in table.items():
            if standard not in allowed:
                problems.append(
                    f"{schema.name}.values.{name}.{original!r}: {standard!r} is not a standard "
                    f"value (use one of {', '.join(sorted(allowed))})"
                )
    return problems


def load_mapping(path: Path) -> MappingSpec:
    data: dict[str, Any] = read_toml(path)
    spec = validate(MappingSpec, data, path)
    if not spec.kind_maps():
        raise SpecError(
            str(path), [("", f"maps no record kind; add one of [{'], ['.join(KINDS)}]")]
        )
    return spec
