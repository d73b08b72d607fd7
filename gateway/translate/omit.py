"""`omit`: the value an expression returns to drop its key (or list item) from a translated tree."""

from __future__ import annotations


class Omit:
    """Returned by an expression to drop its key (or list item) from the tree."""

    _instance: Omit | None = None

    def __new__(cls) -> Omit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "omit"

    def __bool__(self) -> bool:
        return False


OMIT = Omit()
