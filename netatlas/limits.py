"""Limits of a query, in a module of their own so the command line can show them in its help
without loading the engine (``netatlas agent`` never loads DuckDB or sqlglot).

The shape limits are far above what a hand-written Kusto query reaches; they exist so that a
hostile or generated query fails with a clear error at the span that passes them (a KqlError,
code KQL_QUERY_TOO_COMPLEX) instead of exhausting Python's stack or the machine's memory.
"""
from __future__ import annotations

import time

DEFAULT_MAX_ROWS = 500_000      # rows a query returns before its result is cut (``Result.truncated``)
DEFAULT_TIMEOUT = 60.0          # seconds a query may run: lex, parse, plan, generate and execute
DEFAULT_MAX_RESULT_BYTES = 64 * 1024 * 1024   # bytes of a result (its JSON, estimated) before it is
                                # cut, as Kusto's 64 MB (``Result.truncated_by == "max_result_bytes"``)

MAX_NESTING = 64                # nested parentheses, calls, brackets, unary signs, .member/[index] steps
MAX_RESULTS = 16                # result tables of one query (its tabular statements)
MAX_OPERATORS = 200             # tabular operators ('| ...') in one query, all pipelines together
MAX_JOINS = 64                  # join and lookup operators in one query
MAX_JOIN_NESTING = 16           # joins inside the right side of a join inside ... (DuckDB's planner,
                                # which no interrupt stops, slows steeply past 30)
MAX_FUNCTION_DEPTH = 32         # user functions (let f = (...) {...}) calling each other
MAX_SCALAR_NODES = 20_000       # SQL nodes of one scalar let's value (let s2 = s1 + s1 doubles)
MAX_PLAN_STEPS = 10_000         # planner steps (one per expression or operator planned; hand-written
PLAN_STEPS_PER_TOKEN = 4        # queries need about one per token) ... plus this many per token
MAX_GRAPH_PATH = 10             # edges of one variable-length graph-match edge (-[e*1..N]->): each
                                # length is a chain of joins of its own, UNION ALL of them all
MAX_GRAPH_LEGS = 64             # those chains in one graph-match (the lengths of its variable edges
                                # multiplied)
MAX_GRAPH_JOINS = 32            # nodes and edges one graph-match chain joins (its longest lengths)
MAX_TERMS = 495                 # terms of one flat chain (a + b + ...): DuckDB nests expressions
                                # 1000 deep, and an arithmetic operator counts two
PATTERN_MAX_ROWS = 200_000      # distinct value combinations basket() and diffpatterns() read (their
                                # input grouped by its dimensions): summarize or filter it first past it
PATTERN_MAX_DIMENSIONS = 32     # columns basket() and diffpatterns() take as dimensions
PATTERN_MAX_ITEMSETS = 20_000   # frequent patterns they enumerate (raise Threshold, lower MaxDimensions)
MAX_PIVOT_COLUMNS = 1_000       # columns evaluate pivot() makes of a column's distinct values


class Deadline:
    """The moment a query must be done by; every stage checks it (``check``) and the execution
    stage is interrupted at it. ``seconds``: the query's time limit, for the error message."""

    __slots__ = ("seconds", "at")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() >= self.at:
            raise self.error()

    def error(self):
        from .errors import QueryLimitError
        return QueryLimitError(f"the query ran longer than its time limit of {self.seconds:g} s")

# Alerts (alerts.py, issue 17): log search alert rules and what they keep
MAX_ALERT_RULES = 200           # rules of a workspace, the built-in ones included
MAX_ALERT_QUERY_CHARS = 10_000  # characters of a rule's KQL query
MAX_ALERT_HISTORY = 2_000       # history entries kept (fired, resolved, muted, errors), the oldest dropped
MAX_ALERT_INSTANCES = 1_000     # dimension combinations one evaluation may make (past it: an error entry)
MAX_ALERT_WEBHOOKS = 10         # webhook URLs of one rule

# Workbooks (netatlas/workbooks.py): saved pages of parameters and query tiles
WORKBOOK_MAX_BYTES = 256 * 1024     # one workbook's JSON (netatlas's format), as stored
WORKBOOK_MAX_TILES = 60             # tiles of one workbook (text and unsupported ones count)
WORKBOOK_MAX_PARAMETERS = 24        # parameters of one workbook
WORKBOOK_MAX_QUERY_CHARS = 32_000   # the KQL of one tile
WORKBOOK_MAX_TEXT_CHARS = 16_000    # a text tile's markdown, a title or a parameter's value
WORKBOOKS_MAX = 500                 # workbooks stored in one workspace
WORKBOOK_TILE_ROWS = 10_000         # rows one tile's query returns (its result is cut past it)
WORKBOOK_MAX_CHOICES = 1_000        # choices of a drop-down parameter (its query's rows); values a multi parameter selects
WORKBOOK_MAX_DELIMITER_CHARS = 8    # a multi parameter's delimiter (its quote is one of workbooks.QUOTES)
WORKBOOK_MAX_CONDITIONS = 8         # conditions of one tile's visibleWhen (an Azure group's passed down included)
WORKBOOK_IMPORT_MAX_BYTES = 1024 * 1024   # an imported workbook's JSON (Azure's or netatlas's)
WORKBOOK_IMPORT_MAX_ITEMS = 400     # items of an Azure workbook, its groups' items included
WORKBOOK_IMPORT_MAX_DEPTH = 8       # groups inside groups of an Azure workbook
