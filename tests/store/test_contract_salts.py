"""Salts: one sealed salt per epoch, whoever asks first; a destroyed salt never comes back."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from store.contract import T0_DAY

from privacy.keyring import EpochExpired, SealedSalt
from service.store.base import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def sealed(epoch: int = T0_DAY) -> SealedSalt:
    return SealedSalt(epoch, os.urandom(12), os.urandom(48), "key-a")


def test_an_added_salt_is_the_one_read_back(store: Store) -> None:
    salt = sealed()
    assert store.salts.add_sealed_salt(salt) == salt
    assert store.salts.sealed_salt(T0_DAY) == salt


def test_an_epoch_without_a_salt_has_none(store: Store) -> None:
    assert store.salts.sealed_salt(T0_DAY) is None
    assert store.salts.salt_destroyed(T0_DAY) is False


def test_a_second_salt_for_an_epoch_loses_to_the_first(store: Store) -> None:
    first = store.salts.add_sealed_salt(sealed())
    assert store.salts.add_sealed_salt(sealed()) == first


def test_ten_nodes_racing_to_salt_a_new_epoch_end_with_one_salt(
    open_node: Callable[[], Store],
) -> None:
    nodes = [open_node() for _ in range(10)]
    candidates = [sealed() for _ in nodes]
    with ThreadPoolExecutor(len(nodes)) as pool:
        winners = list(
            pool.map(lambda i: nodes[i].salts.add_sealed_salt(candidates[i]), range(len(nodes)))
        )
    assert len(set(winners)) == 1
    assert winners[0] in candidates
    assert nodes[0].salts.status() == [(T0_DAY, True)]


def test_a_destroyed_salt_is_gone_and_never_made_again(store: Store) -> None:
    for epoch in (T0_DAY - 2, T0_DAY - 1, T0_DAY):
        store.salts.add_sealed_salt(sealed(epoch))
    assert store.salts.destroy_before(T0_DAY, NOW) == [T0_DAY - 2, T0_DAY - 1]
    assert store.salts.sealed_salt(T0_DAY - 1) is None
    assert store.salts.salt_destroyed(T0_DAY - 1) is True
    with pytest.raises(EpochExpired):
        store.salts.add_sealed_salt(sealed(T0_DAY - 1))
    assert store.salts.status() == [(T0_DAY - 2, False), (T0_DAY - 1, False), (T0_DAY, True)]
    assert [s.epoch for s in store.salts.all_sealed()] == [T0_DAY]


def test_destroying_twice_destroys_each_epoch_once(store: Store) -> None:
    store.salts.add_sealed_salt(sealed(T0_DAY - 1))
    assert store.salts.destroy_before(T0_DAY, NOW) == [T0_DAY - 1]
    assert store.salts.destroy_before(T0_DAY, NOW) == []


def test_resealing_replaces_every_live_salt_at_once(store: Store) -> None:
    for epoch in (T0_DAY - 1, T0_DAY):
        store.salts.add_sealed_salt(sealed(epoch))
    store.salts.destroy_before(T0_DAY, NOW)
    resealed = [SealedSalt(T0_DAY, os.urandom(12), os.urandom(48), "key-b")]
    store.salts.reseal_all(resealed)
    assert store.salts.all_sealed() == resealed
    assert store.salts.sealed_salt(T0_DAY - 1) is None
