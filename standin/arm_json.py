"""ARM JSON shapes of watchlists, items and alert rules (api-version 2021-10-01)."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from standin.workspace import ItemRecord, WatchlistRecord

__all__ = ["arm_error_response", "item_json", "rule_json", "watchlist_json"]

TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
ACTOR = {"objectId": "00000000-0000-0000-0000-0000000000bb", "name": "standin"}

#: Properties the service keeps from a watchlist PUT (rawContent is never returned).
WATCHLIST_FIELDS = (
    "displayName",
    "provider",
    "source",
    "itemsSearchKey",
    "contentType",
    "numberOfLinesToSkip",
    "description",
    "labels",
    "defaultDuration",
    "watchlistType",
)


def arm_error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers=headers,
    )


def watchlist_json(base: str, record: WatchlistRecord) -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: record.properties[name]
        for name in WATCHLIST_FIELDS
        if name in record.properties
    }
    properties.setdefault("numberOfLinesToSkip", 0)
    properties.setdefault("labels", [])
    properties.update(
        {
            "watchlistId": record.watchlist_id,
            "watchlistAlias": record.alias,
            "watchlistType": properties.get("watchlistType", "watchlist"),
            "isDeleted": False,
            "tenantId": TENANT_ID,
            "created": record.created,
            "updated": record.updated,
            "createdBy": ACTOR,
            "updatedBy": ACTOR,
            "uploadStatus": "Complete",
        }
    )
    return {
        "id": f"{base}/watchlists/{record.alias}",
        "name": record.alias,
        "type": "Microsoft.SecurityInsights/Watchlists",
        "etag": record.etag,
        "properties": properties,
    }


def item_json(base: str, alias: str, item: ItemRecord) -> dict[str, Any]:
    return {
        "id": f"{base}/watchlists/{alias}/watchlistItems/{item.item_id}",
        "name": item.item_id,
        "type": "Microsoft.SecurityInsights/Watchlists/WatchlistItems",
        "etag": item.etag,
        "properties": {
            "watchlistItemType": "watchlist-item",
            "watchlistItemId": item.item_id,
            "tenantId": TENANT_ID,
            "isDeleted": False,
            "created": item.created,
            "updated": item.updated,
            "createdBy": ACTOR,
            "updatedBy": ACTOR,
            "itemsKeyValue": dict(item.values),
            "entityMapping": {},
        },
    }


def rule_json(base: str, rule_id: str, stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{base}/alertRules/{rule_id}",
        "name": rule_id,
        "type": "Microsoft.SecurityInsights/alertRules",
        "kind": stored["kind"],
        "etag": stored["etag"],
        "properties": dict(stored["properties"]),
    }
