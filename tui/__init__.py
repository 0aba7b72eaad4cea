"""The Textual quota dashboard."""
