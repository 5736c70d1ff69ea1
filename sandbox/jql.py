"""A JQL subset, evaluated the way Jira does it: dates in the searching user's zone, to the minute.

Supported: ``project``, ``issuetype``, ``status``, ``statusCategory``,
``key``, ``id``, ``priority`` with ``=``, ``!=``, ``IN``, ``NOT IN``; the
dates ``updated``, ``created``, ``resolved`` with ``=``, ``!=``, ``>``,
``>=``, ``<``, ``<=`` against ``"yyyy/MM/dd HH:mm"``, ``"yyyy-MM-dd HH:mm"``,
``"yyyy/MM/dd"``, ``"yyyy-MM-dd"`` (read in the user's zone), relative
``"-15m"``/``"-4h"``/``"-2d"``/``"-1w"``, unquoted epoch milliseconds, and
``now()``; ``AND``, ``OR``, ``NOT`` and parentheses; ``ORDER BY f [ASC|DESC], …``.
Anything else is a 400 ``Error in the JQL Query``, as on a real site.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DATE_FIELDS = frozenset({"updated", "created", "resolved", "resolutiondate"})
TEXT_FIELDS = frozenset(
    {"project", "issuetype", "status", "statuscategory", "key", "id", "priority"}
)
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|>=|<=|=|>|<|\(|\)|,)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.\-]*\(\)|[A-Za-z0-9_.\-/:]+))"
)
_RELATIVE = re.compile(r"^([+-]?\d+)([mhdw])$")
_LITERAL_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")


class JqlError(ValueError):
    """The query is not valid JQL (for this subset); the message is Jira's wording."""


Issue = Mapping[str, Any]
Predicate = Callable[[Issue], bool]


@dataclass(frozen=True)
class Query:
    predicate: Predicate | None  # None: unbounded (no restriction, only ORDER BY or nothing)
    order_by: tuple[tuple[str, bool], ...]  # (field, descending)

    def matches(self, issue: Issue) -> bool:
        return self.predicate is None or self.predicate(issue)


def issue_value(issue: Issue, name: str) -> Any:
    """The comparable value of a JQL field for an emulator issue."""
    fields = issue["fields"]
    match name:
        case "project":
            return (fields["project"]["key"], fields["project"]["name"], fields["project"]["id"])
        case "issuetype":
            return (fields["issuetype"]["name"], fields["issuetype"]["id"])
        case "status":
            return (fields["status"]["name"], fields["status"]["id"])
        case "statuscategory":
            category = fields["status"]["statusCategory"]
            return (category["name"], category["key"], str(category["id"]))
        case "priority":
            priority = fields.get("priority") or {}
            return (priority.get("name"), priority.get("id"))
        case "key":
            return (issue["key"],)
        case "id":
            return (issue["id"],)
        case "resolved" | "resolutiondate":
            return issue.get("_resolved")
        case _:
            return issue.get(f"_{name}")  # _updated, _created: aware datetimes


class _Parser:
    def __init__(self, text: str, zone: ZoneInfo, now: datetime) -> None:
        self.tokens = self._tokenize(text)
        self.position = 0
        self.zone = zone
        self.now = now

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, position = [], 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if not match or match.end() == position:
                raise JqlError(
                    f"Error in the JQL Query: the character '{text[position]}' is a reserved JQL character"
                )
            kind = match.lastgroup or "word"
            tokens.append((kind, match.group(kind)))
            position = match.end()
        return tokens

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def peek_upper(self) -> str | None:
        token = self.peek()
        return token.upper() if token is not None else None

    def take(self) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise JqlError("Error in the JQL Query: the query ends unexpectedly")
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse(self) -> Query:
        predicate = None
        if self.peek_upper() not in (None, "ORDER"):
            predicate = self.expression()
        order: list[tuple[str, bool]] = []
        if self.peek_upper() == "ORDER":
            self.take()
            if self.peek_upper() != "BY":
                raise JqlError("Error in the JQL Query: expecting 'BY' after 'ORDER'")
            self.take()
            while True:
                field = self.take()[1].lower()
                descending = False
                if self.peek_upper() in ("ASC", "DESC"):
                    descending = self.take()[1].upper() == "DESC"
                order.append((field, descending))
                if self.peek() != ",":
                    break
                self.take()
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: unexpected '{self.peek()}'")
        return Query(predicate, tuple(order))

    def expression(self) -> Predicate:
        left = self.term()
        while self.peek_upper() == "OR":
            self.take()
            right = self.term()
            left = (lambda a, b: lambda issue: a(issue) or b(issue))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.peek_upper() == "AND":
            self.take()
            right = self.factor()
            left = (lambda a, b: lambda issue: a(issue) and b(issue))(left, right)
        return left

    def factor(self) -> Predicate:
        if self.peek_upper() == "NOT":
            self.take()
            inner = self.factor()
            return lambda issue: not inner(issue)
        if self.peek() == "(":
            self.take()
            inner = self.expression()
            if self.take()[1] != ")":
                raise JqlError("Error in the JQL Query: expecting ')'")
            return inner
        return self.clause()

    def clause(self) -> Predicate:
        field = self.take()[1].lower()
        if field not in DATE_FIELDS | TEXT_FIELDS:
            raise JqlError(
                f"Error in the JQL Query: Field '{field}' does not exist or you do not have permission to view it."
            )
        op = self.take()[1].upper()
        if op == "NOT":
            if self.take()[1].upper() != "IN":
                raise JqlError("Error in the JQL Query: expecting 'IN' after 'NOT'")
            op = "NOT IN"
        if field in DATE_FIELDS:
            return self.date_clause(field, op)
        if field == "id" and op in (">", ">=", "<", "<="):
            bound = int(self.value())
            compare: Callable[[int, int], bool] = {
                ">": lambda a, b: a > b,
                ">=": lambda a, b: a >= b,
                "<": lambda a, b: a < b,
                "<=": lambda a, b: a <= b,
            }[op]
            return lambda issue: compare(int(issue["id"]), bound)
        if op in ("IN", "NOT IN"):
            values = self.value_list()
        elif op in ("=", "!="):
            values = [self.value()]
        else:
            raise JqlError(
                f"Error in the JQL Query: the operator '{op}' is not supported by field '{field}'"
            )
        wanted = {v.lower() for v in values}
        negate = op in ("!=", "NOT IN")

        def text_predicate(issue: Issue) -> bool:
            found = any(
                str(v).lower() in wanted for v in issue_value(issue, field) if v is not None
            )
            return found != negate

        return text_predicate

    def value_list(self) -> list[str]:
        if self.take()[1] != "(":
            raise JqlError("Error in the JQL Query: expecting '(' after IN")
        values = [self.value()]
        while self.peek() == ",":
            self.take()
            values.append(self.value())
        if self.take()[1] != ")":
            raise JqlError("Error in the JQL Query: expecting ')'")
        return values

    def value(self) -> str:
        kind, text = self.take()
        return _unquote(text) if kind == "str" else text

    def date_clause(self, field: str, op: str) -> Predicate:
        if op not in ("=", "!=", ">", ">=", "<", "<="):
            raise JqlError(
                f"Error in the JQL Query: the operator '{op}' is not supported by field '{field}'"
            )
        kind, text = self.take()
        moment = self.moment(kind, text)
        compare: dict[str, Callable[[datetime, datetime], bool]] = {
            "=": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
        }
        test = compare[op]

        def date_predicate(issue: Issue) -> bool:
            value = issue_value(issue, field)
            if value is None:
                return op == "!="
            # Jira compares at minute precision: seconds of the stored value do not count.
            return test(value.replace(second=0, microsecond=0), moment)

        return date_predicate

    def moment(self, kind: str, text: str) -> datetime:
        """A date literal as Jira reads it: in the user's zone, to the minute."""
        if kind == "word" and text.lower() == "now()":
            return self.now.replace(second=0, microsecond=0)
        if kind == "word" and text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, UTC).replace(second=0, microsecond=0)
        literal = _unquote(text) if kind == "str" else text
        relative = _RELATIVE.match(literal)
        if relative:
            amount, unit = int(relative[1]), relative[2]
            delta = {
                "m": timedelta(minutes=1),
                "h": timedelta(hours=1),
                "d": timedelta(days=1),
                "w": timedelta(weeks=1),
            }[unit]
            return (self.now + amount * delta).replace(second=0, microsecond=0)
        for layout in _LITERAL_FORMATS:
            try:
                return datetime.strptime(literal, layout).replace(tzinfo=self.zone)
            except ValueError:
                continue
        raise JqlError(
            f"Error in the JQL Query: Date value '{literal}' for field '{kind}' is invalid. Valid formats "
            "include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
            "e.g. '-5d', '4w 2d'."
        )


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def parse(text: str, zone: ZoneInfo, now: datetime | None = None) -> Query:
    """Parse ``text``; date literals are read in ``zone`` (the searching user's profile zone)."""
    return _Parser(text, zone, now or datetime.now(UTC)).parse()


def sort_key(name: str) -> Callable[[Issue], Any]:
    """ORDER BY key: dates by time, ids and keys numerically where they are numbers."""

    def key(issue: Issue) -> Any:
        if name in ("id",):
            return int(issue["id"])
        if name == "key":
            project, _, number = issue["key"].partition("-")
            return (project, int(number) if number.isdigit() else 0)
        value = issue_value(issue, name)
        if isinstance(value, tuple):
            return tuple("" if v is None else str(v) for v in value)
        return value or datetime.min.replace(tzinfo=UTC)

    return key
