"""Ledger rows spread over partitions: a known answer, and an even spread for the key shapes
producers use."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from shared.ledger import (
    LEGACY_PARTITION,
    LEGACY_WEBHOOK_PARTITION,
    PARTITION_COUNT,
    effect_key,
    effect_partition,
    job_partition,
    partitions,
)


def test_known_partitions() -> None:
    # sha256("order-1042-shipped") starts 0x98: 152 % 64 = 24 = 0x18
    assert job_partition("order-1042-shipped") == "job-18"
    assert effect_partition(effect_key("sms:SM" + "0" * 32)).startswith("fx-")
    assert partitions()[:2] == ["job-00", "job-01"]
    assert partitions()[-2:] == [LEGACY_PARTITION, LEGACY_WEBHOOK_PARTITION]
    assert len(set(partitions())) == 2 * PARTITION_COUNT + 2


@pytest.mark.parametrize("keys", [
    [f"order-{i}" for i in range(10_000)],                 # a counter
    [f"msg-{uuid.uuid4()}" for _ in range(10_000)],        # jobs without an id
    [f"2026-12-04T10:00:{i:05d}" for i in range(10_000)],  # timestamps
], ids=["counter", "uuid", "timestamp"])
def test_ten_thousand_keys_spread_evenly(keys: list[str]) -> None:
    counts = Counter(job_partition(k) for k in keys)
    mean = len(keys) / PARTITION_COUNT
    assert len(counts) >= 64
    assert max(counts.values()) <= 2 * mean


def test_effects_spread_evenly() -> None:
    counts = Counter(effect_partition(effect_key(f"status:{i}")) for i in range(10_000))
    assert len(counts) >= 64 and max(counts.values()) <= 2 * 10_000 / PARTITION_COUNT
