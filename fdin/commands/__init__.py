"""Subcommands of ``python -m fdin``: one module each (see :mod:`fdin.cli`)."""
