"""Declarative translation: YAML trees whose leaves are sandboxed Jinja expressions."""
