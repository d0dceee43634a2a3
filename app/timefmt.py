"""Times in UTC, and as text written one way everywhere.

Every stored time is read back as an aware UTC datetime (:class:`app.models.UTCDateTime`),
and the code makes its own with ``datetime.now(UTC)``; a naive datetime is a mistake, refused
by :func:`as_utc`. The API, exports and CSV files write :func:`iso_utc`; templates write
:func:`utc_text`, which the dashboard registers as the ``utc`` filter.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime, *, timespec: str = "auto") -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-12-31T18:00:00Z`` (microseconds when there are
    some, unless *timespec* says otherwise, as :meth:`datetime.isoformat` takes it)."""
    return as_utc(moment).isoformat(timespec=timespec).replace("+00:00", "Z")


def utc_text(moment: datetime | None, form: str = "seconds") -> str:
    """*moment* as the dashboard writes it, the same on every host; "—" for none.

    *form* is ``seconds`` (``2026-01-31 14:05:09 UTC``), ``minutes`` (``2026-01-31 14:05
    UTC``, for the rule pages) or ``iso`` (``2026-01-31T14:05:09Z``, for the ``datetime``
    attribute of ``<time>``, which takes at most milliseconds).
    """
    if moment is None:
        return "—"
    if form == "seconds":
        return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")
    if form == "minutes":
        return as_utc(moment).strftime("%Y-%m-%d %H:%M UTC")
    if form == "iso":
        return iso_utc(moment, timespec="seconds")
    raise ValueError(f"unknown time form {form!r}; use seconds, minutes or iso")


def as_utc(moment: datetime) -> datetime:
    """*moment* in UTC; a naive datetime is refused, since nothing says which zone it meant."""
    if moment.tzinfo is None:
        raise ValueError(f"the time {moment.isoformat()} has no time zone; pass an aware "
                         "datetime, such as one read from the database or datetime.now(UTC)")
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
