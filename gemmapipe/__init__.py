"""gemmapipe: schema-valid JSON from messy text, in Unix pipelines, on a laptop CPU."""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
