"""`python -m pooler.cli`: the same as the `pooler` command."""

from pooler.cli.main import main

main()
