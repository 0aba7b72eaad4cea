"""pooler: a fair-share ledger for a consortium that pools compute, datasets and models."""

__version__ = "0.1.0"
