"""The pure core: domain values, periods, plans and allocation.

Nothing here imports storage, the CLI or the UI, and nothing here reads a clock.
"""
