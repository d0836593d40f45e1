"""netatlas: a self-hosted successor to Azure Monitor's Service Map, with a KQL engine on DuckDB."""
from __future__ import annotations

from .errors import (IngestError, KqlError, KqlSemanticError, KqlSyntaxError, NetatlasError,
                     QueryExecutionError, QueryLimitError)
from .result import Result
from .workspace import Workspace, connect

__version__ = "0.1.0"
__all__ = ["connect", "Workspace", "Result", "NetatlasError", "KqlError", "KqlSyntaxError",
           "KqlSemanticError", "QueryLimitError", "QueryExecutionError", "IngestError", "__version__"]
