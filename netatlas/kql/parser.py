"""Stage 2, parse: Tokens -> Query syntax tree.

Recursive descent for statements and operators (one method per tabular operator, found through
the OPERATORS table), precedence climbing for scalar expressions (BINARY_PRECEDENCE).
"""
from __future__ import annotations

from ..errors import KqlSyntaxError, Span, did_you_mean
from ..limits import MAX_JOIN_NESTING, MAX_JOINS, MAX_NESTING, MAX_OPERATORS
from . import syntax as s
from .tokens import EOF, IDENT, INT, OP, RAW, REAL, STRING, TIMESPAN, Token, tokenize

# Binary operators by precedence level (higher binds tighter).
BINARY_PRECEDENCE: dict[str, int] = {
    "or": 1, "and": 2,
    "==": 4, "!=": 4, "<>": 4, "<": 4, "<=": 4, ">": 4, ">=": 4, "=~": 4, "!~": 4,
    "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}
# Word operators at comparison level: contains, has, startswith, ... and their negations.
STRING_OPERATORS = {
    "contains", "contains_cs", "has", "has_cs", "hasprefix", "hasprefix_cs", "hassuffix",
    "hassuffix_cs", "startswith", "startswith_cs", "endswith", "endswith_cs", "like",
}
STRING_OPERATORS |= {"!" + op for op in STRING_OPERATORS if op != "like"}
LIST_OPERATORS = {"in", "!in", "in~", "!in~", "has_any", "has_all"}
COMPARISON = 4
SCALAR_TYPES = {"string", "long", "int", "real", "double", "bool", "boolean", "datetime", "date",
                "timespan", "time", "dynamic", "guid", "uuid", "uniqueid", "decimal", "int64", "int32"}
TYPE_ALIASES = {"double": "real", "boolean": "bool", "date": "datetime", "time": "timespan",
                "uuid": "guid", "uniqueid": "guid", "int64": "long", "int32": "int"}
OPERATOR_PARAMS = {"kind", "withsource", "WithSource", "isfuzzy", "bagexpansion", "with_itemindex", "flags",
                   "hint", "decodeblocks", "bin_legacy", "withsource_dynamic"}
JOIN_KINDS = {"innerunique", "inner", "leftouter", "rightouter", "fullouter", "leftanti",
              "rightanti", "leftsemi", "rightsemi", "anti", "leftantisemi", "rightantisemi"}


def parse(text: str, tokens: list[Token] | None = None) -> s.Query:
    """Parse KQL text (or its Tokens) into a Query; raises KqlSyntaxError pointing at the offending token."""
    try:
        return Parser(text, tokens).query()
    except KqlSyntaxError as err:
        raise err.attach(text)


class Parser:
    def __init__(self, text: str, tokens: list[Token] | None = None):
        self.text = text
        self.toks = tokens if tokens is not None else tokenize(text)
        self.i = 0
        self.depth = 0          # nesting of the expression being read (limits.MAX_NESTING)
        self.operators = 0      # tabular operators read (limits.MAX_OPERATORS)
        self.joins = 0          # join and lookup operators read (limits.MAX_JOINS)
        self.join_depth = 0     # right sides of joins being read (limits.MAX_JOIN_NESTING)

    # ---- token helpers ----------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> Token:
        t = self.toks[self.i]
        if t.kind != EOF:
            self.i += 1
        return t

    def error(self, message: str, tok: Token | None = None, hint: str | None = None):
        tok = tok or self.tok
        raise KqlSyntaxError(message, tok.span, text=self.text, hint=hint)

    def expect_op(self, op: str, what: str | None = None) -> Token:
        if not self.tok.is_op(op):
            self.error(f"expected '{op}'{' ' + what if what else ''}, found {self.tok.describe()}")
        return self.advance()

    def accept_op(self, *ops: str) -> Token | None:
        return self.advance() if self.tok.kind == OP and self.tok.value in ops else None

    def accept_word(self, *words: str) -> Token | None:
        return self.advance() if self.tok.kind == IDENT and self.tok.value in words else None

    def expect_word(self, word: str) -> Token:
        if not self.tok.is_word(word):
            self.error(f"expected '{word}', found {self.tok.describe()}")
        return self.advance()

    def bracket_name(self) -> Token | None:
        """['quoted name'] in a name position, as one identifier token."""
        if self.tok.is_op("[") and self.peek().kind == STRING and self.peek(2).is_op("]"):
            start = self.advance()
            name = self.advance()
            end = self.advance()
            return Token(IDENT, name.value, Span(start.span.start, end.span.end), self.text[start.span.start:end.span.end])
        return None

    def ident(self, what: str = "a name") -> Token:
        if (b := self.bracket_name()) is not None:
            return b
        if self.tok.kind != IDENT:
            self.error(f"expected {what}, found {self.tok.describe()}")
        return self.advance()

    def too_complex(self, message: str, tok: Token, hint: str):
        """Past a shape limit of limits.py: the error points at the token that passes it."""
        raise KqlSyntaxError(message, tok.span, text=self.text, code="KQL_QUERY_TOO_COMPLEX", hint=hint)

    def span_from(self, start: Span) -> Span:
        prev = self.toks[self.i - 1] if self.i else self.tok
        return Span(start.start, max(start.end, prev.span.end))

    # ---- statements -------------------------------------------------------------------------
    def query(self) -> s.Query:
        start = self.tok.span
        stmts = self.statements(end_ops=())
        if self.tok.kind != EOF:
            self.error(f"unexpected {self.tok.describe()}",
                       hint="separate statements with ';' and operators with '|'")
        if not stmts:
            self.error("the query is empty")
        return s.Query(self.span_from(start), stmts)

    def statements(self, end_ops: tuple[str, ...]) -> list[s.Node]:
        stmts = []
        while self.tok.kind != EOF and not (self.tok.kind == OP and self.tok.value in end_ops):
            if self.accept_op(";"):
                continue
            stmts.append(self.statement())
            if not self.accept_op(";"):
                break
        return stmts

    def statement(self) -> s.Node:
        t = self.tok
        if t.is_word("let"):
            self.advance()
            name = self.ident("a name after 'let'")
            self.expect_op("=", "after the let name")
            if self.tok.is_word("view") and self.peek().is_op("("):
                self.advance()
            if self.tok.is_op("(") and self._looks_like_params():
                value = self.function_def()
            else:
                value = self.pipe_expr()
            return s.Let(self.span_from(t.span), name.value, value)
        if t.is_word("declare") and self.peek().is_word("query_parameters"):
            self.advance(), self.advance()
            self.expect_op("(")
            params = self.param_list()
            return s.DeclareParams(self.span_from(t.span), params)
        if t.is_word("set") and self.peek().kind == IDENT and not self.peek().is_op("|"):
            self.advance()
            name = self.ident()
            value = self.primary() if self.accept_op("=") else None
            return s.Set(self.span_from(t.span), name.value, value)
        expr = self.pipe_expr()
        return s.ExprStatement(expr.span, expr)

    def _looks_like_params(self) -> bool:
        # (a:long, ...) { or () {
        j = self.i + 1
        if self.toks[j].is_op(")"):
            return self.toks[j + 1].is_op("{")
        return self.toks[j].kind == IDENT and self.toks[j + 1].is_op(":")

    def param_list(self) -> list[s.Param]:
        params = []
        while not self.tok.is_op(")"):
            name = self.ident("a parameter name")
            self.expect_op(":", "and a type after the parameter name")
            if self.tok.is_op("("):
                self.advance()
                cols = None
                if self.accept_op("*"):
                    cols = []
                else:
                    cols = self.column_decls(end=")")
                self.expect_op(")")
                params.append(s.Param(self.span_from(name.span), name.value, None, cols or [], None))
            else:
                typ = self.type_name()
                default = self.expr() if self.accept_op("=") else None
                params.append(s.Param(self.span_from(name.span), name.value, typ, None, default))
            if not self.accept_op(","):
                break
        self.expect_op(")", "to close the parameter list")
        return params

    def function_def(self) -> s.FunctionDef:
        start = self.expect_op("(").span
        params = self.param_list()
        brace = self.expect_op("{", "to start the function body")
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.too_complex(f"function bodies are nested more than {MAX_NESTING} deep here", brace,
                             "define the inner functions with let statements of their own")
        body = self.statements(end_ops=("}",))
        self.depth -= 1
        self.expect_op("}", "to end the function body")
        return s.FunctionDef(self.span_from(start), params, body)

    def type_name(self) -> str:
        t = self.tok
        if t.kind == IDENT and t.value.lower() in SCALAR_TYPES:
            self.advance()
            v = t.value.lower()
            return TYPE_ALIASES.get(v, v)
        if t.kind == RAW and t.value[0] in SCALAR_TYPES:   # e.g. "dynamic" lexed with a body
            self.error(f"expected a type name, found {t.describe()}")
        self.error(f"expected a type name, found {t.describe()}",
                   hint="types are string, long, int, real, bool, datetime, timespan, dynamic, guid, decimal")

    def column_decls(self, end: str) -> list[tuple[str, str]]:
        cols = []
        while not self.tok.is_op(end):
            name = self.ident("a column name")
            self.expect_op(":", "and a type after the column name")
            cols.append((name.value, self.type_name()))
            if not self.accept_op(","):
                break
        return cols

    # ---- tabular pipelines --------------------------------------------------------------------
    def pipe_expr(self) -> s.Node:
        node = self.expr()
        while self.tok.is_op("|"):
            self.advance()
            op = self.operator()
            node = s.Pipe(Span(node.span.start, op.span.end), node, op)
        return node

    def operator(self) -> s.Operator:
        t = self.tok
        if t.kind != IDENT:
            self.error(f"expected an operator after '|', found {t.describe()}")
        name = t.value
        handler = OPERATORS.get(name)
        if handler is None:
            raise KqlSyntaxError(f"unknown operator '{name}'", t.span, text=self.text,
                                 code="KQL_UNKNOWN_OPERATOR", hint=did_you_mean(name, OPERATORS))
        self.operators += 1
        if self.operators > MAX_OPERATORS:
            self.too_complex(f"the query has more than {MAX_OPERATORS} tabular operators", t,
                             "summarize earlier, or split the work into several queries")
        if name in ("join", "lookup"):
            self.joins += 1
            if self.joins > MAX_JOINS:
                self.too_complex(f"the query has more than {MAX_JOINS} joins and lookups", t,
                                 "join fewer tables in one query")
        self.advance()
        args = handler(self)
        canonical = CANONICAL.get(name, name)
        return s.Operator(self.span_from(t.span), canonical, args)

    # operator bodies: each returns the operator's args dict
    def op_where(self):
        return {"predicate": self.expr()}

    def op_project(self):
        return {"items": self.assign_list()}

    def op_name_list(self):
        names = []
        while True:
            names.append(self.name_pattern())
            if not self.accept_op(","):
                return {"names": names}

    def op_project_reorder(self):
        names = []
        while True:
            pat = self.name_pattern()
            order = self.accept_word("asc", "desc", "granny-asc", "granny-desc")
            names.append((pat, order.value if order else None))
            if not self.accept_op(","):
                return {"names": names}

    def name_pattern(self) -> tuple[str, Span]:
        start = self.tok.span
        parts = []
        while True:
            if (b := self.bracket_name()) is not None:
                parts.append(b.value)
                break
            if self.tok.kind == IDENT:
                parts.append(self.advance().value)
            elif self.tok.is_op("*"):
                parts.append("*")
                self.advance()
            else:
                break
            if self.tok.space_before or not (self.tok.kind == IDENT or self.tok.is_op("*")):
                break
        if not parts:
            self.error(f"expected a column name, found {self.tok.describe()}")
        return "".join(parts), self.span_from(start)

    def op_project_rename(self):
        pairs = []
        while True:
            new = self.ident("a new column name")
            self.expect_op("=", "in 'NewName = OldName'")
            old = self.ident("the column to rename")
            pairs.append((new.value, old.value, old.span))
            if not self.accept_op(","):
                return {"pairs": pairs}

    def op_summarize(self):
        params = self.op_params()
        aggs = [] if self.tok.is_word("by") else self.assign_list()
        by = self.assign_list() if self.accept_word("by") else []
        return {"aggs": aggs, "by": by, "params": params}

    def op_sort(self):
        self.expect_word("by")
        return {"keys": self.sort_keys()}

    def sort_keys(self) -> list[s.SortKey]:
        keys = []
        while True:
            e = self.expr()
            desc = True
            if (d := self.accept_word("asc", "desc")):
                desc = d.value == "desc"
            nulls = None
            if self.accept_word("nulls"):
                w = self.accept_word("first", "last") or self.error("expected 'first' or 'last' after 'nulls'")
                nulls = w.value == "first"
            keys.append(s.SortKey(self.span_from(e.span), e, desc, nulls))
            if not self.accept_op(","):
                return keys

    def op_top(self):
        count = self.expr()
        self.expect_word("by")
        return {"count": count, "keys": self.sort_keys()}

    def op_take(self):
        return {"count": self.expr()}

    def op_distinct(self):
        if self.accept_op("*"):
            return {"items": None}
        return {"items": self.assign_list()}

    def op_count(self):
        return {}

    def op_params(self) -> dict:
        """name=value parameters before an operator's body (kind=inner, withsource=T, hint.x=y)."""
        params = {}
        while self.tok.kind == IDENT and (self.tok.value in OPERATOR_PARAMS or self.tok.value.startswith("hint")) \
                and (self.peek().is_op("=") or self.peek().is_op(".")):
            if self.peek().is_op("."):   # hint.strategy=...
                j = self.i
                name = self.advance().value
                while self.accept_op("."):
                    name += "." + self.ident().value
                if not self.tok.is_op("="):
                    self.i = j
                    break
            else:
                name = self.advance().value
            self.expect_op("=")
            v = self.tok
            if v.kind in (IDENT, STRING, INT, REAL):
                self.advance()
                params[name] = (v.value, v.span)
            else:
                self.error(f"expected a value for '{name}'")
        return params

    def op_join(self):
        params = self.op_params()
        kind = params.pop("kind", ("innerunique", None))
        if kind[0] not in JOIN_KINDS:
            raise KqlSyntaxError(f"unknown join kind '{kind[0]}'", kind[1], text=self.text,
                                 hint=did_you_mean(str(kind[0]), JOIN_KINDS) or f"kinds are {', '.join(sorted(JOIN_KINDS))}")
        right = self.join_right()
        on = []
        if self.accept_word("on"):
            while True:
                on.append(self.expr())
                if not self.accept_op(","):
                    break
        elif self.accept_word("where"):
            self.error("join ... where is not supported; use 'on'")
        else:
            self.error("expected 'on' after the right side of the join")
        return {"kind": kind[0], "right": right, "on": on, "params": params}

    def join_right(self) -> s.Node:
        if self.tok.is_op("("):
            paren = self.advance()
            self.join_depth += 1
            if self.join_depth > MAX_JOIN_NESTING:
                self.too_complex(f"joins are nested more than {MAX_JOIN_NESTING} deep here", paren,
                                 "join the tables one after another in the pipeline, or name parts with let")
            e = self.pipe_expr()
            self.join_depth -= 1
            self.expect_op(")", "to close the right side of the join")
            return e
        return self.expr()

    def op_lookup(self):
        params = self.op_params()
        kind = params.pop("kind", ("leftouter", None))[0]
        if kind not in ("leftouter", "inner"):
            self.error(f"lookup kind must be leftouter or inner, not '{kind}'")
        right = self.join_right()
        self.expect_word("on")
        on = []
        while True:
            on.append(self.expr())
            if not self.accept_op(","):
                break
        return {"kind": kind, "right": right, "on": on}

    def op_union(self):
        params = self.op_params()
        return {"params": params, "tables": self.union_tables()}

    def union_tables(self) -> list[s.Node]:
        tables = []
        while True:
            if self.tok.is_op("("):
                self.advance()
                tables.append(self.pipe_expr())
                self.expect_op(")")
            else:
                pat, span = self.name_pattern()
                tables.append(s.Name(span, pat))
            if not self.accept_op(","):
                return tables

    def op_mv_expand(self):
        params = self.op_params()
        items = []
        while True:
            a = self.assign()
            to = None
            if self.accept_word("to"):
                self.expect_word("typeof")
                self.expect_op("(")
                to = self.type_name()
                self.expect_op(")")
            items.append((a, to))
            if not self.accept_op(","):
                break
        limit = self.expr() if self.accept_word("limit") else None
        return {"params": params, "items": items, "limit": limit}

    def op_mv_apply(self):
        """mv-apply [with_itemindex=I] [Name =] Array [to typeof(T)], ... [limit N] on (Operators)."""
        args = self.op_mv_expand()
        self.expect_word("on")
        self.expect_op("(", "and the subquery in parentheses after 'on'")
        ops = [self.operator()]
        while self.accept_op("|"):
            ops.append(self.operator())
        self.expect_op(")")
        args["subquery"] = ops
        return args

    def op_search(self):
        params = self.op_params()
        return {"params": params, "predicate": self.search_predicate()}

    def search_predicate(self) -> s.Node:
        return self.expr(search=True)

    def op_parse(self):
        params = self.op_params()
        source = self.expr()
        self.expect_word("with")
        pattern = []
        while True:
            t = self.tok
            if t.is_op("*"):
                self.advance()
                pattern.append(("*", None, t.span))
            elif t.kind == STRING:
                self.advance()
                pattern.append(("lit", t.value, t.span))
            elif t.kind == IDENT and not t.is_word("with"):
                self.advance()
                typ = None
                if self.accept_op(":"):
                    typ = self.type_name()
                pattern.append(("col", (t.value, typ), t.span))
            else:
                break
        if not pattern:
            self.error("expected a parse pattern after 'with'")
        return {"params": params, "source": source, "pattern": pattern}

    def op_parse_kv(self):
        """parse-kv Expr as (Key:Type, ...) [with (name=value, ...)]"""
        source = self.expr()
        self.expect_word("as")
        self.expect_op("(")
        keys = []
        while True:
            name = self.ident("a key's name")
            self.expect_op(":")
            keys.append((name.value, self.type_name(), name.span))
            if not self.accept_op(","):
                break
        self.expect_op(")")
        options: dict[str, list] = {}
        if self.accept_word("with"):
            self.expect_op("(")
            while not self.tok.is_op(")"):
                name = self.ident("an option (pair_delimiter, kv_delimiter, quote, escape, greedy, regex)")
                self.expect_op("=")
                v = self.tok
                if v.kind == STRING or (v.kind == IDENT and v.value in ("true", "false")):
                    self.advance()
                    options.setdefault(name.value, []).append((v.value if v.kind == STRING else v.value == "true",
                                                               v.span))
                else:
                    self.error(f"expected a string or true/false for {name.value}, found {v.describe()}")
                if not self.accept_op(","):
                    break
            self.expect_op(")")
        return {"source": source, "keys": keys, "options": options}

    def op_as(self):
        self.op_params()
        return {"name": self.ident("a name after 'as'").value}

    def op_serialize(self):
        items = [] if (self.tok.is_op("|") or self.tok.kind == EOF or self.tok.is_op(")", ";")) else self.assign_list()
        return {"items": items}

    def op_make_series(self):
        params = self.op_params()
        aggs = []
        while True:
            a = self.assign()
            default = None
            if self.accept_word("default"):
                self.expect_op("=")
                default = self.expr()
            aggs.append((a, default))
            if not self.accept_op(","):
                break
        self.expect_word("on")
        axis = self.expr()
        args = {"params": params, "aggs": aggs, "on": axis, "from": None, "to": None, "step": None}
        if self.accept_word("in"):
            self.expect_word("range")
            self.expect_op("(")
            args["from"] = self.expr()
            self.expect_op(",")
            args["to"] = self.expr()
            self.expect_op(",")
            args["step"] = self.expr()
            self.expect_op(")")
        else:
            if self.accept_word("from"):
                args["from"] = self.expr()
            if self.accept_word("to"):
                args["to"] = self.expr()
            self.expect_word("step")
            args["step"] = self.expr()
        args["by"] = self.assign_list() if self.accept_word("by") else []
        return args

    def op_top_nested(self):
        levels = [self.top_nested_level()]
        while self.tok.is_op(",") and self.peek().is_word("top-nested"):
            self.advance(), self.advance()
            levels.append(self.top_nested_level())
        return {"levels": levels}

    def top_nested_level(self) -> dict:
        count = None
        if not self.tok.is_word("of"):
            count = self.expr()
        self.expect_word("of")
        of = self.assign()
        others = None
        if self.accept_word("with"):
            self.expect_word("others")
            self.expect_op("=")
            others = self.expr()
        self.expect_word("by")
        agg = self.assign()
        desc = True
        if (d := self.accept_word("asc", "desc")):
            desc = d.value == "desc"
        return {"count": count, "of": of, "others": others, "by": agg, "desc": desc}

    def op_getschema(self):
        return {}

    def op_render(self):
        viz = self.ident("a visualization (timechart, barchart, ...)")
        props = {}
        if self.accept_word("with"):
            self.expect_op("(")
            while not self.tok.is_op(")"):
                k = self.ident("a property name")
                self.expect_op("=")
                if self.tok.is_op("("):
                    self.advance()
                    vals = []
                    while not self.tok.is_op(")"):
                        vals.append(self.advance().value)
                        self.accept_op(",")
                    self.expect_op(")")
                    props[k.value] = vals
                else:
                    v = self.advance()
                    if v.kind == OP and v.value == "-" and self.tok.kind in (INT, REAL):
                        v = self.advance()
                        props[k.value] = -v.value
                    else:
                        props[k.value] = v.value
                if not self.accept_op(","):
                    break
            self.expect_op(")")
        return {"visualization": viz.value, "props": props, "viz_span": viz.span}

    def op_evaluate(self):
        params = self.op_params()
        call = self.postfix()
        if not isinstance(call, s.Call):
            self.error("expected a plugin call after 'evaluate', e.g. evaluate bag_unpack(Col)")
        schema = None
        if self.accept_op(":"):                   # an output schema: : ([*,] Name:type, ...)
            start = self.expect_op("(", "to start the plugin's output schema").span
            star = False
            if self.tok.is_op("*"):
                self.advance()
                star = True
                self.accept_op(",")
            cols = self.column_decls(")")
            end = self.expect_op(")", "to close the plugin's output schema").span
            schema = {"star": star, "columns": cols, "span": Span(start.start, end.end)}
        return {"plugin": call, "params": params, "schema": schema}

    def op_invoke(self):
        call = self.postfix()
        if not isinstance(call, s.Call):
            self.error("expected a function call after 'invoke'")
        return {"call": call}

    def op_sample(self):
        return {"count": self.expr()}


    # ---- graph operators (planned in graph.py) --------------------------------------------------
    def op_make_graph(self):
        src = self.ident("the source node id column")
        arrow = self.tok
        if not (self.tok.is_op("-") and self.peek().is_op("-") and self.peek(2).is_op(">")):
            self.error("expected '-->' between the source and target columns of make-graph")
        self.advance(), self.advance(), self.advance()
        arrow_span = self.span_from(arrow.span)
        tgt = self.ident("the target node id column")
        nodes = []
        if self.accept_word("with"):
            while True:
                if self.tok.is_op("("):
                    self.advance()
                    table = self.pipe_expr()
                    self.expect_op(")")
                else:
                    name = self.ident("a nodes table")
                    table = s.Name(name.span, name.value)
                self.expect_word("on")
                key = self.ident("the node id column of the nodes table")
                nodes.append((table, key.value, key.span))
                if not self.accept_op(","):
                    break
        node_id = None
        if self.tok.is_word("with_node_id") and self.peek().is_op("="):
            self.advance(), self.advance()
            t = self.ident("a property name for the node id")
            node_id = (t.value, t.span)
        partition = inner = None
        if self.tok.is_word("partitioned-by"):        # one graph per value, the graph operator on each
            self.advance()
            c = self.ident("the partition column")
            partition = (c.value, c.span)
            self.expect_op("(")
            inner = self.operator()
            self.expect_op(")")
        return {"source": (src.value, src.span), "target": (tgt.value, tgt.span), "nodes": nodes,
                "node_id": node_id, "arrow": arrow_span, "partition": partition, "inner": inner}

    def op_graph_match(self):
        params = {}
        while self.tok.kind == IDENT and self.tok.value in ("cycles", "output") and self.peek().is_op("="):
            p = self.advance().value
            self.advance()
            v = self.ident("all, none or unique_edges" if p == "cycles" else "any or all")
            params[p] = (v.value, v.span)
        patterns = [self.graph_pattern()]
        while self.accept_op(","):
            patterns.append(self.graph_pattern())
        where = None
        if self.accept_word("where"):
            where = self.expr()
        if not self.tok.is_word("project"):
            self.error(f"expected 'project' after the graph-match pattern, found {self.tok.describe()}")
        self.advance()
        return {"params": params, "patterns": patterns, "where": where, "project": self.assign_list()}

    def graph_pattern(self) -> list[dict]:
        """(a)-[e]->(b)<-[*1..3]-()--(c): nodes and the edges between them, in order."""
        elems = [self.graph_node()]
        while self.tok.is_op("-") or (self.tok.is_op("<") and self.peek().is_op("-")):
            elems.append(self.graph_edge())
            elems.append(self.graph_node())
        return elems

    def graph_node(self) -> dict:
        start = self.expect_op("(", "to start a node of the graph pattern, e.g. (n)").span
        name = None
        if not self.tok.is_op(")"):
            name = self.ident("a node variable").value
        self.expect_op(")", "to close the node")
        return {"kind": "node", "name": name, "span": self.span_from(start)}

    def graph_edge(self) -> dict:
        start = self.tok.span
        left = bool(self.accept_op("<"))
        self.expect_op("-", "in the edge")
        name, lo, hi = None, 1, 1
        var = False
        if self.accept_op("["):
            if self.tok.kind == IDENT:
                name = self.advance().value
            if self.accept_op("*"):
                var = True
                lo_t = self.tok
                if lo_t.kind != INT:
                    self.error("expected the least number of edges after '*', e.g. *1..3")
                lo = self.advance().value
                hi = lo
                if self.accept_op(".."):
                    if self.tok.kind != INT:
                        self.error("expected the greatest number of edges after '..', e.g. *1..3")
                    hi = self.advance().value
            self.expect_op("]", "to close the edge")
        self.expect_op("-", "in the edge")
        right = bool(self.accept_op(">"))
        if left and right:
            self.error("an edge points one way (-->, <--) or none (--), not both", self.toks[self.i - 1])
        direction = "<-" if left else "->" if right else "--"
        return {"kind": "edge", "name": name, "dir": direction, "var": var, "min": lo, "max": hi,
                "span": self.span_from(start)}

    def op_graph_to_table(self):
        parts = []
        while True:
            what = self.tok
            if not (what.is_word("nodes") or what.is_word("edges")):
                self.error(f"expected 'nodes' or 'edges' after graph-to-table, found {what.describe()}")
            self.advance()
            part = {"what": what.value, "span": what.span, "as": None, "ids": {}}
            while True:
                if self.accept_word("as"):
                    part["as"] = self.ident("a table name").value
                elif self.tok.kind == IDENT and self.tok.value in ("with_node_id", "with_source_id", "with_target_id") \
                        and self.peek().is_op("="):
                    p = self.advance()
                    self.advance()
                    part["ids"][p.value] = (self.ident("a column name").value, p.span)
                else:
                    break
            parts.append(part)
            if not self.accept_op(","):
                return {"parts": parts}

    # ---- lists of (optionally named) expressions ----------------------------------------------
    def assign_list(self) -> list[s.Assign]:
        items = []
        while True:
            items.append(self.assign())
            if not self.accept_op(","):
                return items

    def assign(self) -> s.Assign:
        t = self.tok
        if t.is_op("[") and self.peek().kind == STRING and self.peek(2).is_op("]") and self.peek(3).is_op("="):
            b = self.bracket_name()
            self.advance()
            e = self.expr()
            return s.Assign(self.span_from(b.span), [b.value], e)
        if t.kind == IDENT and self.peek().is_op("="):
            self.advance(), self.advance()
            e = self.expr()
            return s.Assign(self.span_from(t.span), [t.value], e)
        if t.is_op("(") and self._looks_like_tuple_assign():
            self.advance()
            names = []
            while not self.tok.is_op(")"):
                names.append(self.ident().value)
                self.accept_op(",")
            self.advance()
            self.expect_op("=")
            e = self.expr()
            return s.Assign(self.span_from(t.span), names, e)
        e = self.expr()
        return s.Assign(e.span, None, e)

    def _looks_like_tuple_assign(self) -> bool:
        j = self.i + 1
        while self.toks[j].kind == IDENT and self.toks[j + 1].is_op(","):
            j += 2
        return self.toks[j].kind == IDENT and self.toks[j + 1].is_op(")") and self.toks[j + 2].is_op("=")

    # ---- scalar expressions -------------------------------------------------------------------
    def expr(self, min_prec: int = 1, search: bool = False) -> s.Node:
        left = self.unary(search)
        while True:
            t = self.tok
            op = self._binary_op(t)
            if op is None:
                return left
            prec = BINARY_PRECEDENCE.get(op, COMPARISON)
            if prec < min_prec:
                return left
            if op == "matches":
                self.advance()
                self.expect_word("regex")
                right = self.expr(prec + 1, search)
                left = s.Binary(Span(left.span.start, right.span.end), "matches regex", left, right, t.span)
                continue
            self.advance()
            if op in LIST_OPERATORS:
                left = self.in_list(op, left)
                continue
            if op in ("between", "!between"):
                self.expect_op("(", "after between")
                low = self.expr()
                self.expect_op("..", "between the bounds, as in between (1 .. 10)")
                high = self.expr()
                end = self.expect_op(")")
                left = s.Between(Span(left.span.start, end.span.end), op == "!between", left, low, high)
                continue
            right = self.expr(prec + 1, search)
            left = s.Binary(Span(left.span.start, right.span.end), op, left, right, t.span)

    def _binary_op(self, t: Token) -> str | None:
        if t.kind == OP:
            if t.value in BINARY_PRECEDENCE or t.value in LIST_OPERATORS or t.value in STRING_OPERATORS:
                return t.value
            if t.value in ("!between", "!matches"):
                return t.value
            if t.value == "<>":
                return "!="
            return None
        if t.kind == IDENT:
            if t.value in ("and", "or") or t.value in STRING_OPERATORS or t.value in LIST_OPERATORS:
                return t.value
            if t.value in ("between", "matches"):
                return t.value
        return None

    def in_list(self, op: str, left: s.Node) -> s.Node:
        self.expect_op("(", f"after '{op}'")
        items = []
        while not self.tok.is_op(")"):
            items.append(self.pipe_expr())
            if not self.accept_op(","):
                break
        end = self.expect_op(")", f"to close the '{op}' list")
        return s.InList(Span(left.span.start, end.span.end), op, left, items)

    def unary(self, search: bool = False) -> s.Node:
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.too_complex(f"the expression is nested more than {MAX_NESTING} deep here", self.tok,
                             "fewer nested parentheses or calls; name parts with let statements")
        try:
            return self._unary(search)
        finally:
            self.depth -= 1

    def _unary(self, search: bool) -> s.Node:
        t = self.tok
        if t.is_op("-", "+"):
            self.advance()
            operand = self.unary(search)
            if t.value == "-" and isinstance(operand, s.Literal) and operand.type in ("long", "real", "timespan", "int") \
                    and operand.value is not None:
                return s.Literal(self.span_from(t.span), -operand.value, operand.type)
            return s.Unary(self.span_from(t.span), t.value, operand) if t.value == "-" else operand
        if t.is_word("not") and self.peek().is_op("("):
            pass  # not(...) is an ordinary function call
        return self.postfix(search)

    def postfix(self, search: bool = False) -> s.Node:
        node = self.primary(search)
        steps = 0
        while True:
            t = self.tok
            if (t.is_op(".") or t.is_op("[")) and not t.space_before:
                steps += 1
                if steps > MAX_NESTING:
                    self.too_complex(f"more than {MAX_NESTING} .member and [index] steps in a row", t,
                                     "read the value step by step with extend")
            if t.is_op(".") and self.peek().kind in (IDENT, RAW) and not t.space_before:
                self.advance()
                nt = self.advance()
                name = nt.value if nt.kind == IDENT else nt.text
                node = s.Member(self.span_from(node.span), node, name)
            elif t.is_op("[") and not t.space_before:
                self.advance()
                idx = self.expr()
                self.expect_op("]")
                node = s.Index(self.span_from(node.span), node, idx)
            else:
                return node

    def primary(self, search: bool = False) -> s.Node:
        t = self.tok
        k = t.kind
        if k == STRING:
            self.advance()
            return s.Literal(t.span, t.value, "string")
        if k == INT:
            self.advance()
            return s.Literal(t.span, t.value, "long")
        if k == REAL:
            self.advance()
            return s.Literal(t.span, t.value, "real")
        if k == TIMESPAN:
            self.advance()
            return s.Literal(t.span, t.value, "timespan")
        if k == RAW:
            self.advance()
            from .literals import raw_literal
            return raw_literal(t, self.text)
        if t.is_op("("):
            self.advance()
            e = self.pipe_expr()
            self.expect_op(")", "to close '('")
            e.span = Span(t.span.start, self.toks[self.i - 1].span.end) if not isinstance(e, s.Pipe) else e.span
            return e
        if t.is_op("*"):
            self.advance()
            return s.Star(t.span)
        if (b := self.bracket_name()) is not None:
            return s.Name(b.span, b.value)
        if k == IDENT:
            word = t.value
            source = SOURCES.get(word)
            if source and not self.peek().is_op("=", "==", ".") and not (
                    word == "range" and self.peek().is_op("(")):
                self.advance()
                return source(self, t)
            if word in ("true", "false"):
                self.advance()
                return s.Literal(t.span, word == "true", "bool")
            if word == "null":
                self.advance()
                return s.Literal(t.span, None, "dynamic")
            if word.lower() in SCALAR_TYPES and self.peek().is_op("(") and word not in ("string",):
                return self.typed_literal()
            self.advance()
            if self.tok.is_op("(") and not self.tok.space_before or (self.tok.is_op("(") and word in ("typeof",)):
                return self.call(t)
            if self.tok.is_op("("):
                return self.call(t)
            if search and self.tok.is_op(":"):
                self.advance()
                value = self.primary()
                return s.Binary(self.span_from(t.span), ":", s.Name(t.span, word), value, t.span)
            return s.Name(t.span, word)
        if k == EOF:
            self.error("the query ends where an expression was expected")
        self.error(f"expected an expression, found {t.describe()}")

    def typed_literal(self) -> s.Node:
        t = self.advance()
        typ = TYPE_ALIASES.get(t.value.lower(), t.value.lower())
        self.expect_op("(")
        neg = bool(self.accept_op("-"))
        v = self.advance()
        self.expect_op(")")
        span = self.span_from(t.span)
        if v.is_word("null"):
            return s.Literal(span, None, typ)
        from .literals import typed_literal_value
        return s.Literal(span, typed_literal_value(typ, v, neg, self.text), typ)

    def call(self, name_tok: Token) -> s.Call:
        self.expect_op("(")
        args = []
        while not self.tok.is_op(")"):
            if self.tok.is_op("*") and self.peek().is_op(")", ","):
                args.append(s.Star(self.advance().span))
            else:
                a = self.pipe_expr()
                if self.tok.is_op("=") and isinstance(a, s.Name):   # named argument, e.g. kind=map
                    self.advance()
                    a = s.Assign(self.span_from(a.span), [a.name], self.expr())
                args.append(a)
            if not self.accept_op(","):
                break
        end = self.expect_op(")", f"to close the call to {name_tok.value}()")
        return s.Call(Span(name_tok.span.start, end.span.end), name_tok.value, args, name_tok.span)

    # ---- sources: datatable, range, print, union, search ------------------------------------
    def src_datatable(self, t: Token) -> s.Node:
        self.op_params()
        self.expect_op("(", "after datatable")
        cols = self.column_decls(end=")")
        self.expect_op(")")
        self.expect_op("[", "to start the datatable values")
        values = []
        while not self.tok.is_op("]"):
            values.append(self.expr())
            if not self.accept_op(","):
                break
        self.expect_op("]", "to end the datatable values")
        if cols and len(values) % len(cols):
            raise KqlSyntaxError(
                f"datatable has {len(cols)} columns but {len(values)} values, not a multiple of {len(cols)}",
                self.span_from(t.span), text=self.text)
        return s.Datatable(self.span_from(t.span), cols, values)

    def src_range(self, t: Token) -> s.Node:
        col = self.ident("the range column name")
        self.expect_word("from")
        start = self.expr()
        self.expect_word("to")
        stop = self.expr()
        self.expect_word("step")
        step = self.expr()
        return s.RangeSource(self.span_from(t.span), col.value, start, stop, step)

    def src_print(self, t: Token) -> s.Node:
        if self.tok.kind == EOF or self.tok.is_op(";", "|", ")"):
            self.error("'print' needs at least one expression", t, hint="e.g. print x = 1, y = now()")
        return s.PrintSource(self.span_from(t.span), self.assign_list())

    def src_union(self, t: Token) -> s.Node:
        params = self.op_params()
        return s.UnionSource(self.span_from(t.span), params, self.union_tables())

    def src_search(self, t: Token) -> s.Node:
        params = self.op_params()
        tables = None
        if self.accept_word("in"):
            self.expect_op("(")
            tables = []
            while not self.tok.is_op(")"):
                pat, span = self.name_pattern()
                tables.append(s.Name(span, pat))
                if not self.accept_op(","):
                    break
            self.expect_op(")")
        pred = self.search_predicate()
        return s.SearchSource(self.span_from(t.span), params, tables, pred)


OPERATORS = {
    "where": Parser.op_where, "filter": Parser.op_where,
    "project": Parser.op_project, "extend": Parser.op_project,
    "project-away": Parser.op_name_list, "project-keep": Parser.op_name_list,
    "project-reorder": Parser.op_project_reorder, "project-rename": Parser.op_project_rename,
    "summarize": Parser.op_summarize,
    "order": Parser.op_sort, "sort": Parser.op_sort,
    "top": Parser.op_top, "take": Parser.op_take, "limit": Parser.op_take,
    "distinct": Parser.op_distinct, "count": Parser.op_count,
    "join": Parser.op_join, "lookup": Parser.op_lookup, "union": Parser.op_union,
    "mv-expand": Parser.op_mv_expand, "mvexpand": Parser.op_mv_expand,
    "mv-apply": Parser.op_mv_apply, "mvapply": Parser.op_mv_apply,
    "search": Parser.op_search, "parse": Parser.op_parse, "parse-where": Parser.op_parse, "parse-kv": Parser.op_parse_kv,
    "as": Parser.op_as, "serialize": Parser.op_serialize, "make-series": Parser.op_make_series,
    "top-nested": Parser.op_top_nested, "getschema": Parser.op_getschema,
    "render": Parser.op_render, "evaluate": Parser.op_evaluate, "invoke": Parser.op_invoke,
    "sample": Parser.op_sample,
    "make-graph": Parser.op_make_graph, "graph-match": Parser.op_graph_match,
    "graph-to-table": Parser.op_graph_to_table, "graph-shortest-paths": Parser.op_graph_match,
}
CANONICAL = {"filter": "where", "sort": "order", "limit": "take", "mvexpand": "mv-expand", "mvapply": "mv-apply"}
SOURCES = {
    "datatable": Parser.src_datatable, "range": Parser.src_range, "print": Parser.src_print,
    "union": Parser.src_union, "search": Parser.src_search,
}
