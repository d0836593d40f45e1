"""netatlas: a self-hosted successor to Azure Monitor's Service Map, with a KQL engine on DuckDB."""
from __future__ import annotations

import importlib

from .errors import (IngestError, KqlError, KqlSemanticError, KqlSyntaxError, NetatlasError,
                     QueryExecutionError, QueryLimitError)

__version__ = "0.1.0"
__all__ = ["connect", "Workspace", "WorkspaceBusyError", "IngestReport", "Result", "NetatlasError", "KqlError", "KqlSyntaxError",
           "KqlSemanticError", "QueryLimitError", "QueryExecutionError", "IngestError", "__version__"]

# Imported on first use, so that `netatlas agent` (which needs none of them) does not load DuckDB and
# sqlglot: ~37 MB of the agent's memory.
_LAZY = {"Result": ".result", "IngestReport": ".ingest", "Workspace": ".workspace",
         "WorkspaceBusyError": ".workspace", "connect": ".workspace"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'netatlas' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
