"""Botech AI gateway: one OpenAI-compatible API in front of many providers."""

__version__ = "0.1.0"
