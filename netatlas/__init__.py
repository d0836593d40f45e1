"""netatlas: a self-hosted successor to Azure Monitor's Service Map, with a KQL engine on DuckDB."""
from __future__ import annotations

from .errors import (IngestError, KqlError, KqlSemanticError, KqlSyntaxError, NetatlasError,
                     QueryExecutionError, QueryLimitError)
from .result import Result
from .ingest import IngestReport
from .workspace import Workspace, WorkspaceBusyError, connect

__version__ = "0.1.0"
__all__ = ["connect", "Workspace", "WorkspaceBusyError", "IngestReport", "Result", "NetatlasError", "KqlError", "KqlSyntaxError",
           "KqlSemanticError", "QueryLimitError", "QueryExecutionError", "IngestError", "__version__"]
