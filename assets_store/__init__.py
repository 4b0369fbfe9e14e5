"""On-disk contracts: episodes (Zarr v3), store layout, dataset manifests, policy bundles, HDF5 interop.

Imports numpy, zarr and imagecodecs only (h5py lazily, for HDF5 interop). Importing this package
registers the JPEG Zarr codec, so any reader that imports it can decode camera frames.
"""

from assets_store import codec as _codec  # noqa: F401  (registers the JPEG codec)
from assets_store.errors import EpisodeError, StoreError, BundleIntegrityError
from assets_store.names import validate_name
from assets_store.layout import StoreLayout, resolve_store_root
from assets_store.schema import EPISODE_SCHEMA, EPISODE_SCHEMA_VERSION, EpisodeInfo, CameraSpec
from assets_store.episode_writer import EpisodeWriter, WriterStats
from assets_store.episode_reader import EpisodeReader
from assets_store.sessions import (
    SessionIndex,
    EpisodeSummary,
    finalize_session,
    is_session_finalized,
    list_sessions,
    next_episode_index,
)

__all__ = [
    "EpisodeError",
    "StoreError",
    "BundleIntegrityError",
    "validate_name",
    "StoreLayout",
    "resolve_store_root",
    "EPISODE_SCHEMA",
    "EPISODE_SCHEMA_VERSION",
    "EpisodeInfo",
    "CameraSpec",
    "EpisodeWriter",
    "WriterStats",
    "EpisodeReader",
    "SessionIndex",
    "EpisodeSummary",
    "finalize_session",
    "is_session_finalized",
    "list_sessions",
    "next_episode_index",
]
