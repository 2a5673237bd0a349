"""The error a refused job request raises (starting, comparing, retrying), shown to the user."""

from __future__ import annotations


class JobError(ValueError):
    """A job cannot be started or changed; the message is shown to the user."""
