"""The Typer command line: thin wrappers, one service call each."""
