"""Stage 1, lex: KQL text -> Tokens.

A hand-written scanner. Every token keeps its span so that later stages can point into the
query text. Typed literals whose bodies are not KQL tokens (``datetime(2024-01-01 10:00)``,
``dynamic({"a": 1})``, ``guid(...)``, ``time(1.02:00:00)``) are captured whole as RAW tokens.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import KqlSyntaxError, Span

IDENT, STRING, INT, REAL, TIMESPAN, RAW, OP, EOF = (
    "identifier", "string", "int", "real", "timespan", "literal", "operator", "end of query")

# Literal types whose body is captured raw: name -> the RAW token's kind.
RAW_LITERALS = {"datetime", "date", "time", "timespan", "dynamic", "guid", "uuid", "uniqueid"}

# Hyphenated operator names that lex as one identifier.
COMPOUND_NAMES = {
    "project-away", "project-rename", "project-reorder", "project-keep", "project-smart",
    "mv-expand", "mv-apply", "parse-where", "parse-kv", "top-nested", "top-hitters",
    "make-series", "make-graph", "order-by", "sort-by",
    "graph-match", "graph-to-table", "graph-shortest-paths", "partitioned-by",
}
# their prefixes, for names of more than two words (graph-to-table)
COMPOUND_PREFIXES = {"-".join(n.split("-")[:k]) for n in COMPOUND_NAMES for k in range(2, n.count("-") + 1)}

# Words that may follow "!" to make a negated operator.
NEGATABLE = {
    "contains", "contains_cs", "has", "has_cs", "hasprefix", "hasprefix_cs", "hassuffix",
    "hassuffix_cs", "startswith", "startswith_cs", "endswith", "endswith_cs", "in", "between",
    "has_any", "has_all", "matches",
}

PUNCT = sorted([
    "==", "!=", "<>", "<=", ">=", "=~", "!~", "..", "=>", "|", "(", ")", "[", "]", "{", "}", ",",
    ";", ".", "=", "<", ">", "+", "-", "*", "/", "%", ":", "!", "~", "?",
], key=len, reverse=True)

PUNCT_SET = frozenset(PUNCT)

# Timespan suffixes -> ticks (100 ns) per unit.
TICKS = {"d": 864_000_000_000, "day": 864_000_000_000, "days": 864_000_000_000,
         "h": 36_000_000_000, "hr": 36_000_000_000, "hrs": 36_000_000_000,
         "hour": 36_000_000_000, "hours": 36_000_000_000,
         "m": 600_000_000, "min": 600_000_000, "minute": 600_000_000, "minutes": 600_000_000,
         "s": 10_000_000, "sec": 10_000_000, "second": 10_000_000, "seconds": 10_000_000,
         "ms": 10_000, "milli": 10_000, "millis": 10_000, "millisecond": 10_000,
         "milliseconds": 10_000, "microsecond": 10, "microseconds": 10,
         "tick": 1, "ticks": 1}

DIGITS = "0123456789"
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)([A-Za-z_]*)", re.ASCII)
# Identifiers: a letter (any script, as in Kusto), _ or $, then letters, digits and _.
_IDENT = re.compile(r"(?:[^\W\d]|\$)\w*")
_ASCII_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A lone UTF-16 surrogate is not a character: JSON can carry one ("\ud800"), UTF-8 cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Spaces: Unicode's (no-break space too), and the zero-width space, word joiner and byte-order mark,
# which text pasted from documents and chats carries and Kusto's lexer skips as it does spaces
_SPACE = re.compile(r"(?:[\s\u200b\u2060\ufeff]+|//[^\n]*)+")


@dataclass(slots=True)
class Token:
    kind: str
    value: object
    span: Span
    text: str  # the source text of the token
    space_before: bool = False

    def is_op(self, *ops: str) -> bool:
        return self.kind == OP and self.value in ops

    def is_word(self, *words: str) -> bool:
        return self.kind == IDENT and self.value in words

    def describe(self) -> str:
        return "end of query" if self.kind == EOF else f"'{self.text}'"


Tokens = list[Token]


def tokenize(text: str) -> Tokens:
    """Scan KQL text into tokens; raises KqlSyntaxError at the first character it cannot read."""
    if (bad := _SURROGATE.search(text)) is not None:
        i = bad.start()
        raise KqlSyntaxError(f"the query text holds a lone UTF-16 surrogate (U+{ord(text[i]):04X}), which is not a character",
                             Span(i, i + 1), text=text, hint="send the query as valid Unicode (UTF-8)")
    out: Tokens = []
    i, n = 0, len(text)
    while True:
        m = _SPACE.match(text, i)
        spaced = bool(m)
        if m:
            i = m.end()
        if i >= n:
            out.append(Token(EOF, None, Span(n, n), "", spaced))
            return out
        c = text[i]
        if c in "\"'" or (c in "@hH" and i + 1 < n and text[i + 1] in "\"'") or (
                c in "hH" and text[i + 1:i + 2] == "@" and text[i + 2:i + 3] in "\"'"):
            tok, i = _string(text, i)
        elif c in DIGITS or (c == "." and i + 1 < n and text[i + 1] in DIGITS):   # ASCII only: not "²"
            tok, i = _number(text, i)
        elif c == "`" and text.startswith("```", i):
            end = text.find("```", i + 3)
            if end < 0:
                raise KqlSyntaxError("unterminated ``` string", Span(i, n), text=text)
            tok, i = Token(STRING, text[i + 3:end], Span(i, end + 3), text[i:end + 3]), end + 3
        elif c.isalpha() or c in "_$":
            tok, i = _word(text, i)
        elif c == "!" and i + 1 < n and _ASCII_IDENT.match(text, i + 1):
            m2 = _ASCII_IDENT.match(text, i + 1)
            word = m2.group(0)
            if word in NEGATABLE:
                j = m2.end()
                val = "!" + word
                if word == "in" and text[j:j + 1] == "~":
                    j, val = j + 1, "!in~"
                tok, i = Token(OP, val, Span(i, j), text[i:j]), j
            else:
                tok, i = Token(OP, "!", Span(i, i + 1), "!"), i + 1
        else:
            p = text[i:i + 2]
            if p not in PUNCT_SET:
                p = c
                if p not in PUNCT_SET:
                    raise KqlSyntaxError(f"unexpected character {c!r}", Span(i, i + 1), text=text,
                                         hint="KQL strings are quoted with \" or '")
            tok, i = Token(OP, p, Span(i, i + len(p)), p), i + len(p)
        tok.space_before = spaced
        if tok.kind == STRING and out and out[-1].kind == STRING:
            # adjacent string literals are one literal: "ab" 'cd' == "abcd"
            prev = out[-1]
            span = prev.span + tok.span
            out[-1] = Token(STRING, prev.value + tok.value, span, text[span.start:span.end], prev.space_before)
            continue
        out.append(tok)


def _word(text: str, i: int) -> tuple[Token, int]:
    m = _IDENT.match(text, i)
    word, j = m.group(0), m.end()
    # hyphenated operator names: project-away, mv-expand, ...
    while text[j:j + 1] == "-":
        m2 = _IDENT.match(text, j + 1)
        longer = f"{word}-{m2.group(0)}" if m2 else ""
        if longer in COMPOUND_NAMES or longer in COMPOUND_PREFIXES:
            word, j = longer, m2.end()
        else:
            break
    if "-" in word and word not in COMPOUND_NAMES:    # a prefix only (graph-to): words again
        m, word = _IDENT.match(text, i), _IDENT.match(text, i).group(0)
        j = m.end()
    if word == "in" and text[j:j + 1] == "~":
        return Token(OP, "in~", Span(i, j + 1), "in~"), j + 1
    k = j
    while k < len(text) and text[k] in " \t":
        k += 1
    if word.lower() in RAW_LITERALS and text[k:k + 1] == "(":
        end = _balanced(text, k)
        body = text[k + 1:end - 1].strip()
        return Token(RAW, (word.lower(), body), Span(i, end), text[i:end]), end
    return Token(IDENT, word, Span(i, j), word), j


def _balanced(text: str, k: int) -> int:
    depth, q, j = 0, None, k
    while j < len(text):
        ch = text[j]
        if q:
            if ch == "\\":
                j += 2
                continue
            if ch == q:
                q = None
        elif ch in "\"'":
            q = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise KqlSyntaxError("unclosed '(' in literal", Span(k, len(text)), text=text)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "0": "\0"}


def _string(text: str, i: int) -> tuple[Token, int]:
    start = i
    if text[i] in "hH":
        i += 1
    verbatim = text[i] == "@"
    if verbatim:
        i += 1
    q = text[i]
    j = i + 1
    buf = []
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == q:
            if verbatim and text[j + 1:j + 2] == q:
                buf.append(q)
                j += 2
                continue
            return Token(STRING, "".join(buf), Span(start, j + 1), text[start:j + 1]), j + 1
        if ch == "\\" and not verbatim:
            nxt = text[j + 1:j + 2]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[j + 2:j + 6] or ""):
                code = int(text[j + 2:j + 6], 16)
                if 0xD800 <= code < 0xDC00 and text[j + 6:j + 8] == "\\u" and \
                        re.fullmatch(r"[dD][c-fC-F][0-9a-fA-F]{2}", text[j + 8:j + 12]):   # a surrogate pair
                    low = int(text[j + 8:j + 12], 16)
                    buf.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                    j += 12
                    continue
                if 0xD800 <= code < 0xE000:
                    raise KqlSyntaxError(f"\\u{code:04X} is half of a UTF-16 surrogate pair, not a character",
                                         Span(j, j + 6), text=text, hint="write the pair, e.g. \\uD83D\\uDE00")
                buf.append(chr(code))
                j += 6
                continue
            buf.append(_ESCAPES.get(nxt, "\\" + nxt))
            j += 2
            continue
        if ch == "\n":
            break
        buf.append(ch)
        j += 1
    raise KqlSyntaxError("unterminated string literal", Span(start, j), text=text,
                         hint=f"close it with {q}")


def _number(text: str, i: int) -> tuple[Token, int]:
    m = _NUMBER.match(text, i)
    num, suffix = m.group(1), m.group(2)
    j = m.end()
    if suffix:
        unit = suffix.lower()
        if unit not in TICKS or num.lower().startswith("0x"):
            raise KqlSyntaxError(f"unknown number suffix {suffix!r}", Span(i, j), text=text,
                                 hint="timespan units are d, h, m/min, s, ms, microsecond, tick")
        ticks = round(float(num) * TICKS[unit])
        return Token(TIMESPAN, ticks, Span(i, j), text[i:j]), j
    if num.lower().startswith("0x"):
        return Token(INT, int(num, 16), Span(i, j), num), j
    if any(ch in num for ch in ".eE"):
        return Token(REAL, float(num), Span(i, j), num), j
    return Token(INT, int(num), Span(i, j), num), j
