// KQL for CodeMirror 5: a highlighting mode ("kql") and a completion source, both fed by the
// workspace's vocabulary (GET /api/schema: tables and their columns, functions, operators).

// Words of the language that are not tabular operators: highlighted as keywords.
const KEYWORDS = ["by", "on", "kind", "with", "and", "or", "not", "in", "!in", "in~", "!in~", "has", "!has", "has_cs",
  "!has_cs", "hasprefix", "hassuffix", "has_any", "has_all", "contains", "!contains", "contains_cs", "!contains_cs",
  "startswith", "!startswith", "startswith_cs", "endswith", "!endswith", "endswith_cs", "matches", "regex", "between",
  "!between", "asc", "desc", "nulls", "first", "last", "let", "set", "declare", "query_parameters", "step", "from",
  "to", "of", "limit", "typeof", "inner", "outer", "leftouter", "rightouter", "fullouter", "leftanti", "rightanti",
  "leftsemi", "rightsemi", "innerunique", "anti", "semi", "isfuzzy", "withsource", "title", "xcolumn", "ycolumns",
  "series", "xtitle", "ytitle", "legend", "ysplit", "accumulate"];
const ATOMS = ["true", "false", "null", "bool", "boolean", "int", "long", "real", "double", "decimal", "string",
  "datetime", "date", "timespan", "time", "dynamic", "guid"];
// Used until /api/schema answers (and kept if it does not).
const OPERATORS = ["where", "filter", "project", "project-away", "project-keep", "project-rename", "project-reorder",
  "extend", "summarize", "count", "take", "limit", "top", "top-nested", "sort", "order", "distinct", "join", "union",
  "lookup", "render", "mv-expand", "mv-apply", "make-series", "parse", "parse-where", "evaluate", "search", "as",
  "getschema", "sample", "sample-distinct", "serialize", "range", "print", "datatable", "find", "invoke", "facet",
  "fork", "partition", "scan", "externaldata", "materialize"];
const RENDER_KINDS = ["timechart", "barchart", "columnchart", "piechart", "scatterchart", "areachart", "linechart",
  "stackedareachart", "table", "map"];

export const vocab = {
  tables: {},                           // name -> [[column, type], ...]
  functions: [],
  operators: [...OPERATORS],
  set(schema) {
    this.tables = schema.tables || {};
    if (schema.functions && schema.functions.length) this.functions = [...schema.functions];
    if (schema.operators && schema.operators.length) this.operators = [...new Set([...schema.operators, "render"])];
    this.index();
  },
  index() {
    this.tableSet = new Set(Object.keys(this.tables));
    this.columnSet = new Set(Object.values(this.tables).flat().map(([c]) => c));
    this.functionSet = new Set(this.functions);
    this.operatorSet = new Set(this.operators);
  },
};
vocab.index();
const keywordSet = new Set(KEYWORDS);
const atomSet = new Set(ATOMS);
const renderSet = new Set(RENDER_KINDS);

const NUMBER = /^(?:0x[0-9a-f]+|\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?:d|h|hr|hrs|hour|hours|m|min|minute|minutes|s|sec|second|seconds|ms|milli|millis|microsecond|microseconds|tick|ticks)?\b/i;
const WORD = /^[A-Za-z_$][\w$]*(?:-[A-Za-z_]+)*/;

function classify(word, stream, state) {
  const afterPipe = state.afterPipe;
  state.afterPipe = false;
  if (afterPipe && vocab.operatorSet.has(word)) { state.lastOperator = word; return "keyword"; }
  if (state.lastOperator === "render" && renderSet.has(word)) return "keyword";
  if (vocab.tableSet.has(word)) return "variable-2";
  if (vocab.functionSet.has(word) && stream.match(/^\s*\(/, false)) return "builtin";
  if (keywordSet.has(word)) return "keyword";
  if (atomSet.has(word)) return "atom";
  if (vocab.columnSet.has(word)) return "variable-3";
  return "variable";
}

export function defineKql(CodeMirror) {
  CodeMirror.defineMode("kql", () => ({
    startState: () => ({ afterPipe: true, lastOperator: null }),
    copyState: (s) => ({ ...s }),
    token(stream, state) {
      if (stream.eatSpace()) return null;
      if (stream.match("//")) { stream.skipToEnd(); return "comment"; }
      if (stream.match(/^@?h?"(?:[^"\\\n]|\\.)*"?/) || stream.match(/^@?h?'(?:[^'\\\n]|\\.)*'?/)) return "string";
      if (stream.match(NUMBER)) { state.afterPipe = false; return "number"; }
      if (stream.match("|")) { state.afterPipe = true; state.lastOperator = null; return "operator pipe"; }
      if (stream.match(";")) { state.afterPipe = true; state.lastOperator = null; return "punctuation"; }
      if (stream.match(/^!(?:contains|has|startswith|endswith|in|between)(?:_cs)?~?/)) return "keyword";
      if (stream.match(/^(?:==|!=|<=|>=|=~|!~|<>|=>|[-+*/%<>=!])/)) return "operator";
      if (stream.match(/^[()[\]{},.:]/)) return "bracket";
      const m = stream.match(WORD);
      if (m) {
        let word = m[0];
        // "a-b" is subtraction unless the whole is an operator (project-away, mv-expand, top-nested).
        if (word.includes("-") && !vocab.operatorSet.has(word)) {
          stream.backUp(word.length - word.indexOf("-"));
          word = word.slice(0, word.indexOf("-"));
        }
        if (word === "let" || word === "declare") state.afterPipe = false;
        return classify(word, stream, state);
      }
      if (stream.match(/^\[(?:'[^']*'|"[^"]*")\]/)) return "variable";
      stream.next();
      return null;
    },
    lineComment: "//",
  }));
  CodeMirror.defineMIME("text/x-kql", "kql");
}

// The tables a query names (for the columns to offer).
function tablesIn(text) {
  return Object.keys(vocab.tables).filter((t) => new RegExp(`\\b${t}\\b`).test(text));
}

// The completion source: operators after a pipe, else tables, columns, functions and keywords.
export function kqlHint(CodeMirror) {
  return (cm) => {
    const cur = cm.getCursor();
    const line = cm.getLine(cur.line);
    let start = cur.ch;
    while (start > 0 && /[\w$-]/.test(line[start - 1])) start--;
    const prefix = line.slice(start, cur.ch);
    const before = cm.getRange({ line: 0, ch: 0 }, { line: cur.line, ch: start });
    const wholeText = cm.getValue();
    const lower = prefix.toLowerCase();
    let candidates;
    if (/\|\s*$/.test(before)) {
      candidates = vocab.operators.map((o) => ({ text: o, kind: "operator" }));
    } else if (/\brender\s+$/.test(before)) {
      candidates = RENDER_KINDS.map((k) => ({ text: k, kind: "chart" }));
    } else {
      const named = tablesIn(wholeText);
      const columns = new Map();
      for (const t of named.length ? named : Object.keys(vocab.tables)) {
        for (const [c, type] of vocab.tables[t] || []) if (!columns.has(c)) columns.set(c, type);
      }
      candidates = [
        ...[...columns].map(([c, type]) => ({ text: c, kind: `column · ${type}` })),
        ...Object.keys(vocab.tables).map((t) => ({ text: t, kind: "table" })),
        ...vocab.functions.map((f) => ({ text: f, kind: "function" })),
        ...KEYWORDS.filter((k) => /^[a-z]/.test(k)).map((k) => ({ text: k, kind: "keyword" })),
      ];
      if (!prefix) candidates = candidates.filter((c) => c.kind.startsWith("column") || c.kind === "table");
    }
    const seen = new Set();
    const list = candidates
      .filter((c) => c.text.toLowerCase().startsWith(lower) && c.text !== prefix && !seen.has(c.text) && seen.add(c.text))
      .sort((a, b) => (b.text.startsWith(prefix) - a.text.startsWith(prefix)) || a.text.length - b.text.length || a.text.localeCompare(b.text))
      .slice(0, 60)
      .map((c) => ({
        text: c.text, displayText: c.text, className: `hint-${c.kind.split(" ")[0]}`,
        render: (el, _self, data) => {
          el.append(document.createTextNode(data.text));
          const kind = document.createElement("span");
          kind.className = "hint-kind";
          kind.textContent = c.kind;
          el.append(kind);
        },
      }));
    return { list, from: CodeMirror.Pos(cur.line, start), to: CodeMirror.Pos(cur.line, cur.ch) };
  };
}
