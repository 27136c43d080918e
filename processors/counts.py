"""Counters kept as plain dicts of non-zero values (so equal totals compare equal and encode the same)."""


def bump(counts: dict[str, int], key: str, amount: int) -> None:
    """Add ``amount`` to ``counts[key]``; a count that reaches zero disappears."""
    value = counts.get(key, 0) + amount
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)
