"""Default limits of a query, in a module of their own so the command line can show them in its help
without loading the engine (``netatlas agent`` never loads DuckDB or sqlglot)."""
DEFAULT_MAX_ROWS = 500_000      # rows a query returns before its result is cut (``Result.truncated``)
DEFAULT_TIMEOUT = 60.0          # seconds a query may run
