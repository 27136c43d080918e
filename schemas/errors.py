"""The one root exception of the schemas package."""


class SchemaError(ValueError):
    """A payload does not match its schema.

    ``path`` is where it went wrong, in msgspec's notation (``$.target.id``), so an HTTP
    handler or a dead-letter record can say exactly which field was at fault.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    @classmethod
    def from_validation(cls, exc: Exception) -> "SchemaError":
        """Wrap a ``msgspec.ValidationError``/``DecodeError``, keeping its ``at `$.x``` path."""
        text = str(exc)
        path = "$" if exc.__class__.__name__ == "ValidationError" else None
        marker = " - at `"
        if marker in text:
            text, _, rest = text.partition(marker)
            path = rest.rstrip("`")
        return cls(text, path)

    def __str__(self) -> str:
        return f"{self.message} (at {self.path})" if self.path else self.message
