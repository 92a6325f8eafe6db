"""The stand-ins' semantics over real HTTP: httpx for ThreatFox, the real SDK for ARM."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.securityinsight import SecurityInsights
from azure.mgmt.securityinsight.models import (
    EntityMapping,
    FieldMapping,
    ScheduledAlertRule,
    Watchlist,
    WatchlistItem,
)

from standin import faults
from standin.server import StandIn

KEY = "test-auth-key"
SUB = "00000000-0000-0000-0000-000000000001"
RG = "rg-test"
WS = "ws-test"
ALIAS = "ThreatFox-IP"
HEADER = "IPAddress,Port,Malware"

RECORDS = [
    {
        "id": "1",
        "ioc": "a.example",
        "ioc_type": "domain",
        "first_seen": "2026-05-20 10:00:00 UTC",
    },
    {
        "id": "2",
        "ioc": "b.example",
        "ioc_type": "domain",
        "first_seen": "2026-05-14 09:00:00 UTC",
    },
]

RULE_QUERY = (
    "let iocs = _GetWatchlist('ThreatFox-IP') | project SearchKey;\n"
    "CommonSecurityLog | where DestinationIP in (iocs) "
    "| project TimeGenerated, DestinationIP, DeviceName"
)


class StaticCredential:
    """A TokenCredential that never leaves the process."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("local-token", int(time.time()) + 365 * 24 * 3600)


class AllowPlainHttp(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Let the bearer policy send the token to the http:// stand-in."""

    def on_request(self, request: Any) -> None:
        request.context["enforce_https"] = False


@pytest.fixture(scope="module")
def server():
    with StandIn(auth_key=KEY) as running:
        yield running


@pytest.fixture
def standin(server):
    server.reset()
    yield server
    server.reset()


def client(standin: StandIn, **kwargs: Any) -> SecurityInsights:
    return SecurityInsights(
        StaticCredential(),
        SUB,
        base_url=standin.arm_endpoint,
        per_call_policies=[AllowPlainHttp()],
        **kwargs,
    )


def watchlist(raw_content: str | None, search_key: str = "IPAddress") -> Watchlist:
    return Watchlist(
        display_name="ThreatFox IP",
        provider="abuse.ch ThreatFox",
        source="Local file",
        items_search_key=search_key,
        content_type="text/csv",
        number_of_lines_to_skip=0,
        raw_content=raw_content,
    )


def get_iocs(
    standin: StandIn, body: dict[str, Any], key: str | None = KEY, **kw: Any
) -> httpx.Response:
    headers = {} if key is None else {"Auth-Key": key}
    return httpx.post(standin.threatfox_url, json=body, headers=headers, **kw)


def arm_url(standin: StandIn, path: str, version: str = "2021-10-01") -> str:
    return (
        f"{standin.base_url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/"
        "Microsoft.OperationalInsights/workspaces/"
        f"{WS}/providers/Microsoft.SecurityInsights/{path}?api-version={version}"
    )


def rule(**changes: Any) -> ScheduledAlertRule:
    fields: dict[str, Any] = {
        "display_name": "ThreatFox IP in CommonSecurityLog",
        "enabled": True,
        "severity": "Medium",
        "query": RULE_QUERY,
        "query_frequency": timedelta(hours=1),
        "query_period": timedelta(hours=1),
        "trigger_operator": "GreaterThan",
        "trigger_threshold": 0,
        "suppression_enabled": False,
        "suppression_duration": timedelta(hours=1),
        "entity_mappings": [
            EntityMapping(
                entity_type="IP",
                field_mappings=[
                    FieldMapping(identifier="Address", column_name="DestinationIP")
                ],
            )
        ],
    }
    fields.update(changes)
    return ScheduledAlertRule(**fields)


# ThreatFox


def test_get_iocs_serves_every_record_when_the_clock_is_unset(standin):
    standin.threatfox.set_records({"query_status": "ok", "data": RECORDS})

    answer = get_iocs(standin, {"query": "get_iocs", "days": 1})

    assert answer.status_code == 200
    assert [record["id"] for record in answer.json()["data"]] == ["1", "2"]
    assert standin.threatfox.requests == 1
    assert standin.threatfox.last_headers["auth-key"] == KEY
    assert json.loads(standin.threatfox.last_body) == {"query": "get_iocs", "days": 1}


def test_get_iocs_filters_by_first_seen_against_the_clock(standin):
    standin.threatfox.set_records(RECORDS)
    standin.threatfox.now = datetime(2026, 5, 21, tzinfo=UTC)

    one_day = get_iocs(standin, {"query": "get_iocs", "days": 1}).json()
    seven_days = get_iocs(standin, {"query": "get_iocs", "days": 7}).json()
    standin.threatfox.now = datetime(2026, 6, 30, tzinfo=UTC)
    none = get_iocs(standin, {"query": "get_iocs", "days": 7}).json()

    assert [record["id"] for record in one_day["data"]] == ["1"]
    assert [record["id"] for record in seven_days["data"]] == ["1", "2"]
    assert none == {
        "query_status": "no_result",
        "data": "Your search did not yield any results",
    }


@pytest.mark.parametrize("days", ["1", True, 0, 8, 2.5, None])
def test_get_iocs_refuses_days_that_are_not_an_integer_from_1_to_7(standin, days):
    answer = get_iocs(standin, {"query": "get_iocs", "days": days})

    assert answer.status_code == 200
    assert answer.json()["query_status"] == "illegal_days"
    assert isinstance(answer.json()["data"], str)


def test_missing_or_wrong_key_gets_401_and_the_answer_is_switchable(standin):
    missing = get_iocs(standin, {"query": "get_iocs", "days": 1}, key=None)
    wrong = get_iocs(standin, {"query": "get_iocs", "days": 1}, key="nope")
    standin.threatfox.auth_status = 403
    forbidden = get_iocs(standin, {"query": "get_iocs", "days": 1}, key="nope")
    standin.threatfox.auth_status = 200
    standin.threatfox.auth_query_status = "user_blacklisted"
    as_status = get_iocs(standin, {"query": "get_iocs", "days": 1}, key="nope")

    assert missing.status_code == 401
    assert missing.json()["query_status"] == "unknown_auth_key"
    assert wrong.status_code == 401
    assert forbidden.status_code == 403
    assert (as_status.status_code, as_status.json()["query_status"]) == (
        200,
        "user_blacklisted",
    )


def test_unknown_query_gets_unknown_operation(standin):
    answer = get_iocs(standin, {"query": "no_such_thing"})

    assert answer.json() == {"query_status": "unknown_operation"}


def test_threatfox_faults_are_consumed_one_per_request_in_order(standin):
    standin.threatfox.set_records(RECORDS)
    standin.threatfox.faults.push(
        faults.http_error(502),
        faults.http_error(429, retry_after=7),
        faults.truncated_json(),
        faults.envelope({"query_status": "ok", "data": "a string"}),
        faults.auth_failure(403),
    )
    body = {"query": "get_iocs", "days": 1}

    html = get_iocs(standin, body)
    limited = get_iocs(standin, body)
    truncated = get_iocs(standin, body)
    odd = get_iocs(standin, body)
    refused = get_iocs(standin, body)
    normal = get_iocs(standin, body)

    assert html.status_code == 502
    assert html.headers["content-type"].startswith("text/html")
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
    assert truncated.status_code == 200
    with pytest.raises(ValueError):
        json.loads(truncated.content)
    assert json.loads(normal.content)["data"][0]["id"] == "1"
    assert truncated.content == normal.content[: len(normal.content) // 2]
    assert odd.json() == {"query_status": "ok", "data": "a string"}
    assert (refused.status_code, refused.json()["query_status"]) == (
        403,
        "unknown_auth_key",
    )
    assert standin.threatfox.requests == 6


def test_dropped_connection_and_cut_body_reach_httpx_as_transport_errors(standin):
    standin.threatfox.faults.push(faults.drop_connection(), faults.cut_body())
    body = {"query": "get_iocs", "days": 1}

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        get_iocs(standin, body)
    with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
        get_iocs(standin, body)
    assert get_iocs(standin, body).json()["query_status"] == "no_result"


def test_delay_fault_trips_the_client_timeout(standin):
    standin.threatfox.faults.push(faults.delay(1.0))

    with pytest.raises(httpx.ReadTimeout):
        get_iocs(standin, {"query": "get_iocs", "days": 1}, timeout=0.2)


def test_exports_need_the_key_in_the_path_and_a_stored_file(standin):
    standin.threatfox.set_export("recent.csv", b'# "first_seen_utc","ioc_id"\n')
    base = f"{standin.base_url}/v2/files/exports"

    stored = httpx.get(f"{base}/{KEY}/recent.csv")
    wrong_key = httpx.get(f"{base}/nope/recent.csv")
    absent = httpx.get(f"{base}/{KEY}/full.csv.zip")

    assert (stored.status_code, stored.content) == (
        200,
        b'# "first_seen_utc","ioc_id"\n',
    )
    assert wrong_key.status_code == 401
    assert absent.status_code == 404


def test_feed_file_loads_a_get_iocs_response(standin, tmp_path):
    feed = tmp_path / "feed.json"
    feed.write_text(
        json.dumps({"query_status": "ok", "data": RECORDS}), encoding="utf-8"
    )

    standin.threatfox.load_feed(feed)

    assert [record["ioc"] for record in standin.threatfox.records] == [
        "a.example",
        "b.example",
    ]


# Sentinel: watchlists


def test_raw_content_appends_and_drops_only_rows_identical_in_every_column(standin):
    sdk = client(standin)
    first = f"{HEADER}\n198.51.100.1,443,ExampleRAT\n198.51.100.2,80,ExampleRAT\n"
    again = (
        f"{HEADER}\r\n198.51.100.1,443,ExampleRAT\r\n198.51.100.1,443,OtherRAT\r\n"
        "198.51.100.3,8080,ExampleRAT\r\n198.51.100.3,8080,ExampleRAT\r\n"
    )

    sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(first))
    sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(again))

    rows = standin.sentinel.items(WS, ALIAS)
    assert sorted((row["IPAddress"], row["Malware"]) for row in rows) == [
        ("198.51.100.1", "ExampleRAT"),
        ("198.51.100.1", "OtherRAT"),
        ("198.51.100.2", "ExampleRAT"),
        ("198.51.100.3", "ExampleRAT"),
    ]
    assert standin.sentinel.workspace(WS).changes == 4
    assert standin.sentinel.calls["raw_content_put"] == 2


def test_get_watchlist_does_not_echo_raw_content(standin):
    sdk = client(standin)
    sdk.watchlists.create_or_update(
        RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
    )

    fetched = sdk.watchlists.get(RG, WS, ALIAS)

    assert fetched.raw_content is None
    assert (fetched.items_search_key, fetched.source) == ("IPAddress", "Local file")
    assert fetched.upload_status == "Complete"
    assert fetched.watchlist_alias == ALIAS


def test_number_of_lines_to_skip_is_honoured(standin):
    sdk = client(standin)
    body = watchlist(f"preamble line\n{HEADER}\n192.0.2.7,1,X\n")
    body.number_of_lines_to_skip = 1

    sdk.watchlists.create_or_update(RG, WS, ALIAS, body)

    assert standin.sentinel.items(WS, ALIAS) == [
        {"IPAddress": "192.0.2.7", "Port": "1", "Malware": "X"}
    ]


def test_raw_content_over_3_8_mb_is_refused(standin):
    sdk = client(standin)
    row = "198.51.100.1,443," + "x" * 1000 + "\n"
    content = HEADER + "\n" + row * 3800

    with pytest.raises(HttpResponseError) as refused:
        sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(content))

    assert refused.value.status_code == 400
    assert "3800000" in str(refused.value)
    assert (
        WS.lower() not in standin.sentinel.workspaces
        or not standin.sentinel.workspace(WS).watchlists
    )


def test_line_over_10240_characters_is_refused(standin):
    sdk = client(standin)
    content = f"{HEADER}\n198.51.100.1,443,{'y' * 10_300}\n"

    with pytest.raises(HttpResponseError, match="10240"):
        sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(content))


@pytest.mark.parametrize(
    ("search_key", "content", "message"),
    [
        (None, f"{HEADER}\n192.0.2.1,1,X\n", "itemsSearchKey"),
        ("Domain", f"{HEADER}\n192.0.2.1,1,X\n", "not a column"),
        ("IPAddress", f"{HEADER}\n,1,X\n", "blank value"),
        ("IPAddress", f"{HEADER}\n", "no watchlist items"),
    ],
)
def test_bad_watchlist_puts_get_400(standin, search_key, content, message):
    sdk = client(standin)

    with pytest.raises(HttpResponseError, match=message) as refused:
        sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(content, search_key))

    assert refused.value.status_code == 400
    assert refused.value.error is not None
    assert refused.value.error.code == "BadRequest"


def test_search_key_of_an_existing_watchlist_cannot_change(standin):
    sdk = client(standin)
    sdk.watchlists.create_or_update(
        RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
    )

    with pytest.raises(HttpResponseError, match="cannot be changed"):
        sdk.watchlists.create_or_update(
            RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n", "Port")
        )


def test_missing_watchlist_is_404_and_delete_removes_items(standin):
    sdk = client(standin)
    sdk.watchlists.create_or_update(
        RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
    )

    sdk.watchlists.delete(RG, WS, ALIAS)
    sdk.watchlists.delete(RG, WS, ALIAS)

    with pytest.raises(ResourceNotFoundError):
        sdk.watchlists.get(RG, WS, ALIAS)
    assert standin.sentinel.applied["watchlist_delete"] == 2


# Sentinel: items


def test_item_listing_pages_by_100_and_the_sdk_pager_gets_all_250(standin):
    sdk = client(standin)
    rows = "".join(f"10.0.{n // 256}.{n % 256},443,X\n" for n in range(250))
    sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(HEADER + "\n" + rows))

    # SDK 1.0.0 annotates list() as yielding pages; it yields WatchlistItem.
    items = cast(list[WatchlistItem], list(sdk.watchlist_items.list(RG, WS, ALIAS)))

    assert len(items) == 250
    assert len({item.name for item in items}) == 250
    assert items[249].items_key_value == {
        "IPAddress": "10.0.0.249",
        "Port": "443",
        "Malware": "X",
    }
    assert standin.sentinel.calls["item_list"] == 3


def test_item_put_creates_then_replaces_and_counts_each_change(standin):
    sdk = client(standin)
    sdk.watchlists.create_or_update(
        RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
    )
    item_id = "6f1f0a5e-2b4c-5d6e-8f90-0123456789ab"

    created = sdk.watchlist_items.create_or_update(
        RG,
        WS,
        ALIAS,
        item_id,
        WatchlistItem(
            items_key_value={"IPAddress": "192.0.2.9", "Port": "9", "Malware": "Y"}
        ),
    )
    sdk.watchlist_items.create_or_update(
        RG,
        WS,
        ALIAS,
        item_id,
        WatchlistItem(
            items_key_value={"IPAddress": "192.0.2.9", "Port": "10", "Malware": "Y"}
        ),
    )
    fetched = sdk.watchlist_items.get(RG, WS, ALIAS, item_id)

    assert created.watchlist_item_id == item_id
    assert fetched.items_key_value == {
        "IPAddress": "192.0.2.9",
        "Port": "10",
        "Malware": "Y",
    }
    assert fetched.is_deleted is False
    assert standin.sentinel.workspace(WS).changes == 3
    assert len(standin.sentinel.items(WS, ALIAS)) == 2


def test_item_delete_twice_is_200_then_204_and_the_sdk_does_not_raise(standin):
    sdk = client(standin)
    sdk.watchlists.create_or_update(
        RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
    )
    first = cast(WatchlistItem, next(iter(sdk.watchlist_items.list(RG, WS, ALIAS))))
    item_id = str(first.name)
    url = arm_url(standin, f"watchlists/{ALIAS}/watchlistItems/{item_id}")

    sdk.watchlist_items.delete(RG, WS, ALIAS, item_id)
    sdk.watchlist_items.delete(RG, WS, ALIAS, item_id)
    raw = httpx.delete(url, headers={"Authorization": "Bearer t"})

    assert standin.sentinel.items(WS, ALIAS) == []
    assert standin.sentinel.calls["item_delete"] == 3
    assert standin.sentinel.workspace(WS).changes == 2
    assert raw.status_code == 204


# Sentinel: gate, switches and faults


def test_arm_needs_a_bearer_token_and_api_version_2021_10_01(standin):
    no_token = httpx.get(arm_url(standin, "watchlists"))
    other_version = httpx.get(
        arm_url(standin, "watchlists", "2025-09-01"),
        headers={"Authorization": "Bearer t"},
    )
    ok = httpx.get(
        arm_url(standin, "watchlists"), headers={"Authorization": "Bearer t"}
    )

    assert no_token.status_code == 401
    assert other_version.status_code == 400
    assert other_version.json()["error"]["code"] == "NoRegisteredProviderFound"
    assert ok.json() == {"value": []}


def test_throttling_answers_429_with_retry_after_and_remaining_headers(standin):
    standin.sentinel.throttle.configure(reads=(2, 0.5))
    headers = {"Authorization": "Bearer t"}

    answers = [
        httpx.get(arm_url(standin, "watchlists"), headers=headers) for _ in range(3)
    ]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[0].headers["x-ms-ratelimit-remaining-subscription-reads"] == "1"
    assert answers[2].headers["retry-after"] == "2"
    assert answers[2].json()["error"]["code"] == "TooManyRequests"


def test_sdk_retries_through_a_dropped_connection(standin):
    sdk = client(standin)
    standin.sentinel.faults.push(faults.drop_connection(on="watchlist_list"))

    assert list(sdk.watchlists.list(RG, WS)) == []
    assert standin.sentinel.calls["watchlist_list"] == 2


def test_apply_then_drop_applies_the_write_the_client_never_heard_of(standin):
    sdk = client(standin, retry_total=0)
    standin.sentinel.faults.push(faults.apply_then_drop(on="raw_content_put"))

    with pytest.raises(ServiceResponseError, match="without response"):
        sdk.watchlists.create_or_update(
            RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
        )

    assert standin.sentinel.items(WS, ALIAS) == [
        {"IPAddress": "192.0.2.1", "Port": "1", "Malware": "X"}
    ]


def test_writes_fail_after_the_cutoff(standin):
    sdk = client(standin, retry_total=0)
    standin.sentinel.fail_writes_after(1)
    sdk.watchlists.create_or_update(
        RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.1,1,X\n")
    )

    with pytest.raises(HttpResponseError) as refused:
        sdk.watchlists.create_or_update(
            RG, WS, ALIAS, watchlist(f"{HEADER}\n192.0.2.2,1,X\n")
        )

    assert refused.value.status_code == 503
    assert sdk.watchlists.get(RG, WS, ALIAS).display_name == "ThreatFox IP"
    assert len(standin.sentinel.items(WS, ALIAS)) == 1
    assert standin.sentinel.write_calls == 2


def test_change_limit_refuses_a_raw_content_put_whole_and_then_single_items(standin):
    sdk = client(standin, retry_total=0)
    standin.sentinel.set_change_limit(3)
    four = HEADER + "\n" + "".join(f"192.0.2.{n},1,X\n" for n in range(4))
    three = HEADER + "\n" + "".join(f"192.0.2.{n},1,X\n" for n in range(3))

    with pytest.raises(HttpResponseError, match="change limit") as refused:
        sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(four))
    sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(three))
    sdk.watchlists.create_or_update(RG, WS, ALIAS, watchlist(three))
    with pytest.raises(HttpResponseError, match="change limit"):
        sdk.watchlist_items.create_or_update(
            RG,
            WS,
            ALIAS,
            "6f1f0a5e-2b4c-5d6e-8f90-0123456789ab",
            WatchlistItem(items_key_value={"IPAddress": "192.0.2.9"}),
        )

    assert refused.value.status_code == 400
    assert len(standin.sentinel.items(WS, ALIAS)) == 3
    assert standin.sentinel.workspace(WS).changes == 3


# Sentinel: alert rules


def test_valid_rule_round_trips_with_etag_and_last_modified(standin):
    sdk = client(standin)

    created = sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule())
    updated = sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule(severity="High"))
    fetched = sdk.alert_rules.get(RG, WS, "rule-1")
    listed = cast(list[ScheduledAlertRule], list(sdk.alert_rules.list(RG, WS)))

    assert isinstance(fetched, ScheduledAlertRule)
    assert created.etag != updated.etag
    assert fetched.severity == "High"
    assert fetched.query == RULE_QUERY
    assert fetched.query_period == timedelta(hours=1)
    assert fetched.last_modified_utc is not None
    assert [listed_rule.name for listed_rule in listed] == ["rule-1"]
    assert standin.sentinel.applied["rule_put"] == 2


def test_rule_reading_a_missing_table_is_refused_like_the_service(standin):
    sdk = client(standin)
    query = RULE_QUERY.replace("CommonSecurityLog", "ASimNetworkSessionLogs")

    with pytest.raises(HttpResponseError) as refused:
        sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule(query=query))
    standin.sentinel.register_table("ASimNetworkSessionLogs")
    sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule(query=query))

    assert refused.value.status_code == 400
    assert "One of the tables does not exist" in str(refused.value)
    assert (
        "Failed to resolve table or column expression named 'ASimNetworkSessionLogs'"
        in str(refused.value)
    )
    assert "SEM0100" in str(refused.value)


def test_registered_unknown_table_can_be_declared_missing(standin):
    sdk = client(standin)
    standin.sentinel.register_table("MyFirewall_CL", exists=False)
    query = RULE_QUERY.replace("CommonSecurityLog", "MyFirewall_CL")

    with pytest.raises(HttpResponseError, match="MyFirewall_CL"):
        sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule(query=query))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {
                "entity_mappings": [
                    EntityMapping(
                        entity_type="IP",
                        field_mappings=[
                            FieldMapping(
                                identifier="Address", column_name="DestinationIP"
                            )
                        ],
                    )
                ]
                * 11
            },
            "at most 10 entity mappings",
        ),
        (
            {
                "entity_mappings": [
                    EntityMapping(
                        entity_type="IP",
                        field_mappings=[
                            FieldMapping(
                                identifier="Address", column_name="NoSuchColumn"
                            )
                        ],
                    )
                ]
            },
            "NoSuchColumn",
        ),
        ({"query_frequency": timedelta(hours=2)}, "less than or equal"),
        (
            {
                "query_frequency": timedelta(minutes=30),
                "query_period": timedelta(days=3),
            },
            "1 hour",
        ),
        ({"query_frequency": timedelta(minutes=1)}, "between 5 minutes and 14 days"),
        ({"suppression_duration": timedelta(hours=25)}, "24 hours"),
        ({"severity": "Critical"}, "severity"),
        ({"trigger_threshold": 10_001}, "10000"),
        ({"query": "search * | take 1"}, "search"),
        ({"custom_details": {"1bad": "DeviceName"}}, "custom details key"),
    ],
)
def test_rule_validation_errors(standin, changes, message):
    sdk = client(standin)

    with pytest.raises(HttpResponseError, match=message) as refused:
        sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule(**changes))

    assert refused.value.status_code == 400
    assert standin.sentinel.workspace(WS).rules == {}


def test_rule_delete_then_get_is_404(standin):
    sdk = client(standin)
    sdk.alert_rules.create_or_update(RG, WS, "rule-1", rule())

    sdk.alert_rules.delete(RG, WS, "rule-1")

    with pytest.raises(ResourceNotFoundError):
        sdk.alert_rules.get(RG, WS, "rule-1")


# Control API and the standalone server


def test_control_api_configures_records_faults_and_sentinel(standin):
    control = f"{standin.base_url}/_standin"
    httpx.post(f"{control}/threatfox/records", json=RECORDS)
    httpx.post(
        f"{control}/faults",
        json={"target": "threatfox", "faults": [{"kind": "status", "status": 503}]},
    )
    httpx.post(
        f"{control}/sentinel/config",
        json={"change_limit": 5, "throttle": {"enabled": True, "writes": [1, 0.1]}},
    )

    failed = get_iocs(standin, {"query": "get_iocs", "days": 1})
    served = get_iocs(standin, {"query": "get_iocs", "days": 1})
    counters = httpx.get(f"{control}/counters").json()

    assert failed.status_code == 503
    assert len(served.json()["data"]) == 2
    assert counters["threatfox"] == {"requests": 2, "export_requests": 0, "records": 2}
    assert standin.sentinel.change_limit == 5
    assert standin.sentinel.throttle.take("writes").remaining == 0
    assert httpx.post(f"{control}/reset").status_code == 200
    assert standin.threatfox.records == []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_python_m_standin_serves_a_feed_file(tmp_path):
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps(RECORDS), encoding="utf-8")
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "standin",
        "--feed",
        str(feed),
        "--port",
        str(port),
        "--auth-key",
        "k1",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        answer = None
        for _ in range(100):
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/api/v1/",
                    json={"query": "get_iocs", "days": 2},
                    headers={"Auth-Key": "k1"},
                )
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert answer is not None
        assert [record["id"] for record in answer.json()["data"]] == ["1", "2"]
    finally:
        process.terminate()
        process.wait(timeout=5)
