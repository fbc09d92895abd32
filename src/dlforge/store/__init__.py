"""Persistence: the SQL store (datasets, versions, runs) and the blob store."""

from dlforge.store.blobs import BlobStore
from dlforge.store.db import Database

__all__ = ["BlobStore", "Database"]
