"""Regular expressions written in a query are RE2, in Kusto as in DuckDB: a constant one is
checked while planning, so a mistake is a KqlError at its literal (code KQL_BAD_REGEX) rather
than a failure of the finished SQL. RE2 itself judges (through a private in-memory DuckDB),
not Python's ``re``, whose syntax differs (\\pL, lookarounds)."""
from __future__ import annotations

from ..errors import KqlSemanticError, Span

HINT = "regular expressions are RE2 syntax (https://github.com/google/re2/wiki/Syntax)"


def re2_error(pattern: str) -> str | None:
    """Why RE2 rejects the pattern, or None when it compiles (the store's RE2 judges)."""
    from ..store.duckdb import re2_error as judge
    return judge(pattern)


def check(pattern, span: Span | None, what: str = "regular expression") -> None:
    """Raise KQL_BAD_REGEX at span when ``pattern`` (a str; anything else is not checked) is not RE2."""
    if isinstance(pattern, str):
        err = re2_error(pattern)
        if err is not None:
            raise KqlSemanticError(f"invalid {what}: {err}", span, code="KQL_BAD_REGEX", hint=HINT)


def check_typed(t) -> None:
    """Check a Typed argument when it is a constant string."""
    if t is not None and t.is_const:
        check(t.const, t.span)
