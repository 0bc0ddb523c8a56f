"""The package version (one place; mmrec_plugin.__version__ re-exports it)."""

__version__ = "0.2.0"
