"""Source kind -> connector class; third-party kinds arrive via the ``itbsc.connectors`` group."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

from connectors.base import Source

ENTRY_POINT_GROUP = "itbsc.connectors"

_BUILT_IN = {
    "servicenow": "connectors.servicenow:ServiceNowSource",
    "jira": "connectors.jira:JiraSource",
}


def _load(target: str) -> type[Source]:
    module_name, _, attribute = target.partition(":")
    cls = getattr(import_module(module_name), attribute)
    if not (isinstance(cls, type) and issubclass(cls, Source)):
        raise TypeError(f"{target} is not a connectors.base.Source subclass")
    return cls


def available_kinds() -> dict[str, str]:
    """Every known kind with the import target that provides it."""
    kinds = dict(_BUILT_IN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds.setdefault(ep.name, ep.value)
    return kinds


def source_class(kind: str) -> type[Source]:
    """The connector class for ``kind``; KeyError names the kinds that exist."""
    kinds = available_kinds()
    if kind not in kinds:
        raise KeyError(f"unknown source kind {kind!r}; known: {', '.join(sorted(kinds))}")
    return _load(kinds[kind])
