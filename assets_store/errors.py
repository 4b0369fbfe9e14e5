"""Errors of the store. Every message names the file, the field and what was expected."""


class StoreError(Exception):
    """Base class for store errors."""


class EpisodeError(StoreError):
    """An episode (being written or read) is malformed; the message names the episode and the array."""

    def __init__(self, episode: object, field: str, problem: str):
        self.episode = str(episode)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.episode}: {field}: {problem}")


class BundleIntegrityError(StoreError):
    """A policy bundle failed verification (missing file, hash mismatch, bad manifest)."""
