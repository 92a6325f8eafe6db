"""The sync's memory and lock, in the Function's own storage account.

A small JSON document (last successful sync, last reconciliation, item changes
spent this month per workspace, last report) is written with ETag-conditional
writes, so two writers can never silently overwrite each other. A blob lease is
the lock that keeps two syncs from running at once: a 60-second lease renewed
in the background, so a killed process frees the lock within a minute.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient

from shared.errors import ConfigError, SyncError, SyncLockedError
from shared.settings import Settings

__all__ = ["StateStore", "SyncState"]

logger = logging.getLogger(__name__)

STATE_BLOB = "state.json"
LOCK_BLOB = "sync.lock"
LEASE_SECONDS = 60
RENEW_EVERY_SECONDS = 20
_WRITE_ATTEMPTS = 5


@dataclass
class SyncState:
    """What the sync remembers between runs."""

    last_success_at: str | None = None
    last_reconcile_at: str | None = None
    # workspace label -> {"month": "2026-12", "changes": 1234}
    change_months: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_report: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, text: str) -> SyncState:
        """Read the document; unknown keys from newer versions are ignored."""
        data = json.loads(text)
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    def to_json(self) -> str:
        """Write the document."""
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def changes_this_month(self, workspace: str, now: datetime) -> int:
        """Item changes already spent in ``workspace`` this calendar month (UTC)."""
        entry = self.change_months.get(workspace, {})
        return int(entry.get("changes", 0)) if entry.get("month") == _month(now) else 0

    def add_changes(self, workspace: str, now: datetime, count: int) -> None:
        """Count ``count`` more item changes for this month."""
        spent = self.changes_this_month(workspace, now)
        self.change_months[workspace] = {"month": _month(now), "changes": spent + count}


def _month(now: datetime) -> str:
    return now.strftime("%Y-%m")


def _container(settings: Settings) -> ContainerClient:
    if settings.storage_connection_string:
        service = BlobServiceClient.from_connection_string(
            settings.storage_connection_string
        )
    elif settings.storage_blob_uri:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(authority=settings.authority_host)
        service = BlobServiceClient(settings.storage_blob_uri, credential=credential)
    else:
        message = (
            "Setting AzureWebJobsStorage (a connection string) or "
            "AzureWebJobsStorage__blobServiceUri is required for the sync state."
        )
        raise ConfigError(message, setting="AzureWebJobsStorage")
    return service.get_container_client(settings.state_container)


class StateStore:
    """Reads and writes the state document and holds the sync lock."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    @classmethod
    def from_settings(cls, settings: Settings) -> StateStore:
        """Connect to the container named by the settings, creating it if needed."""
        store = cls(_container(settings))
        store._ensure_container()
        return store

    def _ensure_container(self) -> None:
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            message = f"Cannot reach the state container: HTTP {exc.status_code}"
            raise SyncError(message) from None

    def load(self) -> tuple[SyncState, str | None]:
        """Return the state and its ETag (None when no state was written yet)."""
        blob = self._container.get_blob_client(STATE_BLOB)
        try:
            download = blob.download_blob()
        except ResourceNotFoundError:
            return SyncState(), None
        text = download.readall().decode("utf-8")
        return SyncState.from_json(text), download.properties.etag

    def update(self, change: Callable[[SyncState], None]) -> SyncState:
        """Apply ``change`` to the stored state with a conditional write; retry on races."""
        blob = self._container.get_blob_client(STATE_BLOB)
        for _attempt in range(_WRITE_ATTEMPTS):
            state, etag = self.load()
            change(state)
            try:
                if etag is None:
                    blob.upload_blob(state.to_json(), overwrite=False)
                else:
                    blob.upload_blob(
                        state.to_json(),
                        overwrite=True,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
            except (ResourceModifiedError, ResourceExistsError):
                logger.warning("State document changed underneath us; reading it again")
                continue
            return state
        raise SyncError("Could not write the state document: it kept changing.")

    @contextmanager
    def lock(self, started_at: str) -> Iterator[None]:
        """Hold the sync lock; raise ``SyncLockedError`` if another sync holds it."""
        blob = self._container.get_blob_client(LOCK_BLOB)
        with suppress(ResourceExistsError):
            blob.upload_blob(b"", overwrite=False)
        lease = BlobLeaseClient(blob)
        try:
            lease.acquire(lease_duration=LEASE_SECONDS)
        except HttpResponseError as exc:
            if exc.status_code != 409:
                raise
            holder = blob.get_blob_properties().metadata.get("started_at")
            message = (
                f"A sync is already running (started {holder or 'at an unknown time'})."
            )
            raise SyncLockedError(message, started_at=holder) from None
        blob.set_blob_metadata({"started_at": started_at}, lease=lease)
        stop = threading.Event()
        renewer = threading.Thread(target=_renew, args=(lease, stop), daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            try:
                lease.release()
            except HttpResponseError:
                logger.warning("Could not release the sync lock; it expires by itself")


def _renew(lease: BlobLeaseClient, stop: threading.Event) -> None:
    while not stop.wait(RENEW_EVERY_SECONDS):
        try:
            lease.renew()
        except HttpResponseError:
            logger.warning("Could not renew the sync lock")
            return
