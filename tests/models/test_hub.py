"""pela.models.hub: offline, a hub name fails in a moment, from the local cache alone."""

import time

import pytest
from huggingface_hub import constants

import pela
from pela.models import hub


def test_unreachable_hub_means_the_local_cache_alone(monkeypatch):
    monkeypatch.setattr(hub, "reachable", lambda endpoint: False)
    before = constants.HF_HUB_OFFLINE
    with hub.offline_unless_reachable() as offline:
        assert offline and constants.HF_HUB_OFFLINE
    assert constants.HF_HUB_OFFLINE == before
    monkeypatch.setattr(hub, "reachable", lambda endpoint: True)
    with hub.offline_unless_reachable() as offline:
        assert offline == bool(before)


def test_no_route_to_a_host_is_unreachable():
    assert not hub.reachable("https://pela-no-such-host.invalid")


def test_offline_a_timm_name_fails_within_seconds(monkeypatch):
    """This machine reaches no hub (as CI's): the error comes at once, not after the client's retries."""
    monkeypatch.setattr(hub, "reachable", lambda endpoint: False)
    start = time.perf_counter()
    with pytest.raises(pela.PelaError, match="could not fetch pretrained weights for timm:vit_tiny_patch16_224"):
        pela.load("timm:vit_tiny_patch16_224")
    assert time.perf_counter() - start < 15
