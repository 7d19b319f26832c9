"""NATS URL lists (pure): what ``RUNSTREAM_NATS_URL`` accepts for a cluster."""

from __future__ import annotations

import pytest

from runstream.broker.urls import advertised, host_port, split_urls
from runstream.settings import load_settings


def test_a_comma_separated_list_keeps_its_order_and_gets_schemes() -> None:
    assert split_urls("nats://a:1, b:2 ,tls://c:3,,nats://a:1") == ["nats://a:1", "nats://b:2", "tls://c:3"]


def test_one_url_is_a_list_of_one() -> None:
    assert split_urls("nats://127.0.0.1:14222") == ["nats://127.0.0.1:14222"]


@pytest.mark.parametrize("bad, says", [
    ("", "no NATS URL"),
    (" , ", "no NATS URL"),
    ("nats://a:1,http://b:2", "not a NATS URL: 'http://b:2'"),
    ("nats://a:1,nats://b:port", "bad port in NATS URL 'nats://b:port'"),
])
def test_a_bad_item_is_named(bad: str, says: str) -> None:
    with pytest.raises(ValueError) as e:
        split_urls(bad)
    assert says in str(e.value)


def test_host_port_defaults_to_4222_only_when_the_url_names_no_port() -> None:
    assert host_port("nats://10.0.0.1") == ("10.0.0.1", 4222)
    assert host_port("nats://u:p@h:15000") == ("h", 15000)


def test_advertised_connect_urls_become_urls_of_the_same_scheme() -> None:
    assert advertised(["127.0.0.1:15001", " ", "h:2"], "tls") == ["tls://127.0.0.1:15001", "tls://h:2"]
    assert advertised(None) == []


def test_settings_check_the_list_and_the_replicas() -> None:
    s = load_settings(env={"RUNSTREAM_NATS_URL": "nats://a:1,nats://b:2", "RUNSTREAM_STREAM_REPLICAS": "3"})
    assert (s.nats_url, s.stream_replicas) == ("nats://a:1,nats://b:2", 3)
    with pytest.raises(ValueError, match="not a NATS URL: 'ftp://b'"):
        load_settings(env={"RUNSTREAM_NATS_URL": "nats://a:1,ftp://b"})
    with pytest.raises(ValueError, match="stream_replicas must be 1 to 5"):
        load_settings(env={"RUNSTREAM_STREAM_REPLICAS": "7"})
