"""The pieces of the ``jwtkit`` command; :mod:`jwtkit.cli` assembles them into one typer app."""
