"""The only module that speaks to the Sentinel management API.

It wraps ``azure-mgmt-securityinsight`` 1.0.0 at api-version 2021-10-01 (the
version that SDK was built for: later versions make watchlist writes
long-running operations it does not poll). Retries are azure-core's
``RetryPolicy``, which honours ``Retry-After`` on 429 and 5xx; we bound it in
attempts and total time rather than adding a second retry layer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy
from azure.core.rest import HttpRequest
from azure.mgmt.securityinsight import SecurityInsights
from azure.mgmt.securityinsight.models import (
    ScheduledAlertRule,
    Watchlist,
    WatchlistItem,
)

from shared.errors import SentinelError
from shared.settings import Settings, WorkspaceRef
from shared.watchlists import ExistingItem, WatchlistSpec

__all__ = [
    "API_VERSION",
    "SentinelClient",
    "build_credential",
]

logger = logging.getLogger(__name__)

API_VERSION = "2021-10-01"
RETRY_AFTER_CAP_SECONDS = 30.0
WATCHLIST_PROVIDER = "abuse.ch ThreatFox"
# Bounded retries: up to 8 tries, never more than 90 s of backoff in one call,
# a 429's Retry-After honoured within that (and capped, see _CappedRetryPolicy).
_RETRY_OPTIONS: dict[str, Any] = {
    "retry_total": 8,
    "retry_status": 8,
    "retry_connect": 4,
    "retry_read": 4,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 20,
    "timeout": 90,
}
_TRANSPORT_OPTIONS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60}


class _CappedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's retry policy, with the server's Retry-After capped.

    azure-core sleeps for whatever Retry-After says; ARM throttling asks for
    seconds, but a broken proxy could ask for hours and stall the run past the
    Function's timeout. Beyond the cap the call fails and the next run retries.
    """

    def get_retry_after(self, response: PipelineResponse[Any, Any]) -> float | None:
        """Return the server's Retry-After in seconds, at most ``RETRY_AFTER_CAP_SECONDS``."""
        asked = super().get_retry_after(response)
        return None if asked is None else min(asked, RETRY_AFTER_CAP_SECONDS)


class _LocalBearerPolicy(SansIOHTTPPolicy[Any, Any]):
    """Adds a fixed bearer token; used only against the loopback stand-in.

    azure-core's token policies refuse plain http, and the stand-in is plain
    http on 127.0.0.1. Settings refuse a static token for any other endpoint.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def on_request(self, request: PipelineRequest[Any]) -> None:
        request.http_request.headers["Authorization"] = f"Bearer {self._token}"


class _StaticCredential:
    """TokenCredential shape for the local stand-in; never used against Azure."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, 4_102_444_800)


def build_credential(settings: Settings) -> TokenCredential:
    """Return the managed identity chain, or the local static token."""
    if settings.static_token:
        return _StaticCredential(settings.static_token)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(authority=settings.authority_host)


def _error_from(exc: AzureError, action: str) -> SentinelError:
    """Map an azure-core error to ``SentinelError``: the one place codes are read."""
    status = None
    body = ""
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        if exc.response is not None:
            body = exc.response.text()[:2000]
    reason = getattr(exc, "message", None) or type(exc).__name__
    if status is None:
        message = f"Sentinel could not be reached to {action}: {reason}"
    else:
        message = f"Sentinel refused to {action}: HTTP {status}: {reason}"
    return SentinelError(message, status_code=status, body=body)


@contextmanager
def _calling(action: str) -> Iterator[None]:
    try:
        yield
    except AzureError as exc:
        raise _error_from(exc, action) from None


class SentinelClient:
    """Watchlists and analytics rules of one Sentinel workspace."""

    def __init__(
        self,
        settings: Settings,
        workspace: WorkspaceRef,
        credential: TokenCredential | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "retry_policy": _CappedRetryPolicy(**_RETRY_OPTIONS),
            **_TRANSPORT_OPTIONS,
        }
        if settings.static_token:
            options["authentication_policy"] = _LocalBearerPolicy(settings.static_token)
        self.workspace = workspace
        self._client = SecurityInsights(
            credential or build_credential(settings),
            workspace.subscription_id,
            base_url=settings.arm_endpoint,
            api_version=API_VERSION,
            credential_scopes=[settings.arm_endpoint + "/.default"],
            **options,
        )
        self._scope = (workspace.resource_group, workspace.workspace_name)
        self._arm_endpoint = settings.arm_endpoint

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()

    def __enter__(self) -> SentinelClient:
        """Use the client as a context manager."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the client."""
        self.close()

    # Watchlists

    def get_watchlist(self, alias: str) -> dict[str, Any] | None:
        """Return a watchlist's properties, or None when it does not exist."""
        try:
            with _calling(f"read watchlist {alias}"):
                watchlist = self._client.watchlists.get(*self._scope, alias)
        except SentinelError as error:
            if error.status_code == 404:
                return None
            raise
        result: dict[str, Any] = watchlist.as_dict()
        return result

    def list_items(self, alias: str) -> list[ExistingItem]:
        """Return every item of a watchlist, following every page; none if it is absent.

        Pages go through the SDK's own pipeline (authentication, retries), but
        are read as JSON rather than deserialized into models: the models cost
        about 0.3 ms an item, most of a run's time on a watchlist of 20,000 rows.
        """
        if self.get_watchlist(alias) is None:
            return []
        items: list[ExistingItem] = []
        url: str | None = self._items_url(alias)
        with _calling(f"list items of watchlist {alias}"):
            while url:
                response = self._client._send_request(HttpRequest("GET", url))
                response.raise_for_status()
                page = response.json()
                items.extend(_item_from_json(item) for item in page.get("value", []))
                url = page.get("nextLink")
        return items

    def _items_url(self, alias: str) -> str:
        workspace = self.workspace
        return (
            f"{self._arm_endpoint}/subscriptions/{quote(workspace.subscription_id)}"
            f"/resourceGroups/{quote(workspace.resource_group)}"
            "/providers/Microsoft.OperationalInsights/workspaces/"
            f"{quote(workspace.workspace_name)}/providers/Microsoft.SecurityInsights"
            f"/watchlists/{quote(alias)}/watchlistItems?api-version={API_VERSION}"
        )

    def upload_rows(self, spec: WatchlistSpec, raw_content: str) -> None:
        """Create the watchlist or append rows to it with one rawContent PUT."""
        watchlist = Watchlist(
            display_name=spec.display_name,
            provider=WATCHLIST_PROVIDER,
            source="Local file",
            description=spec.description,
            items_search_key=spec.search_key,
            content_type="text/csv",
            number_of_lines_to_skip=0,
            raw_content=raw_content,
        )
        with _calling(f"upload rows to watchlist {spec.alias}"):
            self._client.watchlists.create_or_update(
                *self._scope, spec.alias, watchlist
            )

    def delete_item(self, alias: str, item_id: str) -> None:
        """Delete one item; an item already gone is not an error."""
        try:
            with _calling(f"delete an item of watchlist {alias}"):
                self._client.watchlist_items.delete(*self._scope, alias, item_id)
        except SentinelError as error:
            if error.status_code != 404:
                raise

    def put_item(self, alias: str, item_id: str, values: dict[str, str]) -> None:
        """Create or replace one item under a client-chosen id."""
        item = WatchlistItem(items_key_value=values)
        with _calling(f"write an item of watchlist {alias}"):
            self._client.watchlist_items.create_or_update(
                *self._scope, alias, item_id, item
            )

    # Analytics rules

    def get_alert_rule(self, rule_id: str) -> dict[str, Any] | None:
        """Return a rule as ARM JSON (kind, etag, properties), or None."""
        try:
            with _calling(f"read analytics rule {rule_id}"):
                rule = self._client.alert_rules.get(*self._scope, rule_id)
        except (SentinelError, ResourceNotFoundError) as error:
            if isinstance(error, SentinelError) and error.status_code != 404:
                raise
            return None
        result: dict[str, Any] = rule.serialize(keep_readonly=True)
        return result

    def put_alert_rule(self, rule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a scheduled rule from its ARM JSON body."""
        rule = ScheduledAlertRule.deserialize(body)
        with _calling(f"write analytics rule {rule_id}"):
            saved = self._client.alert_rules.create_or_update(
                *self._scope, rule_id, rule
            )
        result: dict[str, Any] = saved.serialize(keep_readonly=True)
        return result


def _item_from_json(item: dict[str, Any]) -> ExistingItem:
    properties = item.get("properties") or {}
    return ExistingItem(
        str(item.get("name", "")), _text_values(properties.get("itemsKeyValue"))
    )


def _text_values(values: Any) -> dict[str, str]:
    if not isinstance(values, dict):
        return {}
    return {
        str(key): "" if value is None else str(value) for key, value in values.items()
    }
