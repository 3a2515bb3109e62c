"""Episode storage on disk, collection and experts; `data.replay` samples training sequences (torch)."""

from genrl_core.data.store import (
    FORMAT_VERSION,
    EpisodeFormatError,
    EpisodeStore,
    load_episode,
    save_episode,
    validate_episode,
)

__all__ = [
    "FORMAT_VERSION",
    "EpisodeFormatError",
    "EpisodeStore",
    "load_episode",
    "save_episode",
    "validate_episode",
]
