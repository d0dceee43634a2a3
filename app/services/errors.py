"""Errors raised by the service layer; every channel (dashboard, CLI, API) shows them as is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: where (``path``, ``rules[2].origins[0]``) and what to do."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ServiceError(Exception):
    """Base class: the message is meant for the person who made the request."""


class ValidationError(ServiceError):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))

    def for_field(self, field: str) -> list[str]:
        return [e.message for e in self.errors if e.field == field]

    def by_field(self) -> dict[str, list[str]]:
        """The messages grouped by the field they name, for forms that show each beside its
        input."""
        grouped: dict[str, list[str]] = {}
        for error in self.errors:
            grouped.setdefault(error.field, []).append(error.message)
        return grouped


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    """The object changed since the caller read it; nothing was written."""

    def __init__(self, message: str, *, current_version: int | None = None) -> None:
        self.current_version = current_version
        super().__init__(message)


class Forbidden(ServiceError):
    """The actor's role does not allow this change."""
