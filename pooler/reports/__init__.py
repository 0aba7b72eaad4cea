"""Audit reports and member statements."""
