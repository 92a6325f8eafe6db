"""Shared fixtures: the loopback stand-in, Azurite, and settings pointing at them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.settings import Settings
from shared.state import StateStore
from shared.sync import SyncOptions
from standin.azurite import Azurite
from standin.server import StandIn

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_FEED = ROOT / "samples" / "threatfox_get_iocs.json"
AUTH_KEY = "tf-test-key-6f1c2b9a"
STATIC_TOKEN = "local-test-token"
# The sample's IOCs were first seen on 2026-05-21/22; tests replay it as of this time.
SAMPLE_NOW = datetime(2026, 5, 23, 0, 0, tzinfo=UTC)
WORKSPACE = "soc-workspace"


@pytest.fixture(scope="session")
def _standin_server() -> Iterator[StandIn]:
    with StandIn(auth_key=AUTH_KEY) as server:
        yield server


@pytest.fixture
def standin(_standin_server: StandIn) -> Iterator[StandIn]:
    """The stand-in, reset, serving the bundled sample feed as of SAMPLE_NOW."""
    _standin_server.reset()
    _standin_server.threatfox.auth_key = AUTH_KEY
    _standin_server.threatfox.load_feed(SAMPLE_FEED)
    _standin_server.threatfox.now = SAMPLE_NOW
    yield _standin_server
    _standin_server.reset()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as server:
        yield server


def settings_mapping(
    standin: StandIn, azurite: Azurite | None, **overrides: str
) -> dict[str, str]:
    """App settings that point the product at the stand-in (and Azurite)."""
    mapping = {
        "THREATFOX_AUTH_KEY": AUTH_KEY,
        "THREATFOX_API_URL": standin.threatfox_url,
        "THREATFOX_EXPORT_URL": standin.exports_url + "/{auth_key}/full.csv.zip",
        "SENTINEL_SUBSCRIPTION_ID": "00000000-1111-2222-3333-444444444444",
        "SENTINEL_RESOURCE_GROUP": "soc-rg",
        "SENTINEL_WORKSPACE_NAME": WORKSPACE,
        "AZURE_ARM_ENDPOINT": standin.arm_endpoint,
        "SENTINEL_STATIC_TOKEN": STATIC_TOKEN,
        "RECONCILE_INTERVAL_HOURS": "0",
        "STATE_CONTAINER": "state-" + uuid.uuid4().hex[:12],
    }
    if azurite is not None:
        mapping["AzureWebJobsStorage"] = azurite.connection_string
    mapping.update(overrides)
    return mapping


@pytest.fixture
def make_settings(standin: StandIn, azurite: Azurite) -> Callable[..., Settings]:
    """Build settings for the stand-in; each call gets its own state container."""

    def build(**overrides: str) -> Settings:
        return Settings.from_mapping(settings_mapping(standin, azurite, **overrides))

    return build


def no_sleep(_seconds: float) -> None:
    """Retries in tests happen at once."""


@pytest.fixture
def make_options() -> Callable[..., SyncOptions]:
    """SyncOptions for tests: sample time, instant retries, a state store."""

    def build(settings: Settings, **overrides: Any) -> SyncOptions:
        values: dict[str, Any] = {
            "now": SAMPLE_NOW,
            "threatfox_options": {"sleep": no_sleep},
            "state_store": StateStore.from_settings(settings),
        }
        values.update(overrides)
        return SyncOptions(**values)

    return build
