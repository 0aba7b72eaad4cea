"""Storage: SQLModel tables, the hash-chained journal, projections and migrations."""
