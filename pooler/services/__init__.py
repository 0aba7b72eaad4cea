"""Services: the operations the CLI and the TUI call, one function per command."""
