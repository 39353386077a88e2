from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from datasync.exceptions import ValidationError
from datasync.names import (
    compact_utc,
    format_utc,
    instance_id,
    page_key,
    parse_utc,
    sanitize_instance_id,
    secret_name,
    utcnow,
    validate_flow_name,
    validate_secret_part,
    validate_tenant_id,
)

UTC = UTC


@pytest.mark.parametrize("name", ["acme", "Acme-Ltd", "a", "A1-b2-C3", "x" * 40, "0"])
def test_valid_tenant_ids(name):
    assert validate_tenant_id(name) == name
    assert validate_secret_part(name) == name


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "is empty"),
        ("x" * 41, "41 characters"),
        ("-acme", "starts or ends with '-'"),
        ("acme-", "starts or ends with '-'"),
        ("ac--me", "contains '--'"),
        ("ac_me", "contains '_'"),
        ("ac me", "contains ' '"),
        ("acmé", "contains 'é'"),
        ("acme\n", "contains '\\n'"),
        ("a/b", "contains '/'"),
    ],
)
def test_invalid_tenant_ids(name, reason):
    with pytest.raises(ValidationError) as exc:
        validate_tenant_id(name)
    assert reason in str(exc.value)
    assert str(exc.value).startswith("tenant id ")


@pytest.mark.parametrize("value", [5, None, b"acme", ["acme"]])
def test_non_strings_are_rejected_not_coerced(value):
    for check in (validate_tenant_id, validate_flow_name, validate_secret_part):
        with pytest.raises(ValidationError, match="must be a string"):
            check(value)


@pytest.mark.parametrize("name", ["contacts-to-erp", "a", "x1", "y" * 40])
def test_valid_flow_names(name):
    assert validate_flow_name(name) == name


@pytest.mark.parametrize("name", ["Bad_Name", "Contacts", "a--b", "-a", "a-", "", "z" * 41, "a.b"])
def test_invalid_flow_names(name):
    with pytest.raises(ValidationError) as exc:
        validate_flow_name(name)
    assert str(exc.value).startswith(f"flow name {name!r} must be 1–40 of a-z, 0-9 and '-'")


def test_secret_part_message_names_the_part():
    with pytest.raises(ValidationError, match=r"^secret key 'to ken'"):
        validate_secret_part("to ken", "key")
    with pytest.raises(ValidationError, match=r"^secret system 'c--rm'"):
        validate_secret_part("c--rm")


def test_format_utc():
    dt = datetime(2026, 11, 23, 15, 0, 0, 987654, tzinfo=timezone(timedelta(hours=1)))
    assert format_utc(dt) == "2026-11-23T14:00:00Z"
    assert compact_utc(dt) == "20261123T140000Z"
    with pytest.raises(ValidationError):
        format_utc(datetime(2026, 11, 23, 14, 0))  # naive
    with pytest.raises(ValidationError):
        compact_utc(datetime(2026, 11, 23, 14, 0))


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T14:00:00Z",
        "2026-11-23T14:00:00+00:00",
        "2026-11-23T15:00:00+01:00",
        "2026-11-23T09:00:00-05:00",
        "2026-11-23T14:00:00.999Z",
        "2026-11-23T19:30:00+05:30",
    ],
)
def test_parse_utc_normalises(text):
    dt = parse_utc(text)
    assert dt == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert dt.utcoffset() == timedelta(0) and dt.microsecond == 0
    assert format_utc(dt) == "2026-11-23T14:00:00Z"


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("2026-11-23T14:00:00", "no UTC offset"),
        ("2026-11-23", "no UTC offset"),
        ("tomorrow", "not an ISO 8601 time"),
        ("", "not an ISO 8601 time"),
        (1764000000, "expected an ISO 8601 time string"),
        (None, "expected an ISO 8601 time string"),
    ],
)
def test_parse_utc_rejects(value, fragment):
    with pytest.raises(ValidationError, match=fragment):
        parse_utc(value)


def test_instance_id():
    when = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert (
        instance_id("acme", "contacts-to-erp", when)
        == "Workflow-acme--contacts-to-erp-20261123T140000Z"
    )
    local = datetime(2026, 11, 23, 15, 0, 30, 5, tzinfo=timezone(timedelta(hours=1)))
    assert instance_id("Acme", "f", local) == "Workflow-Acme--f-20261123T140030Z"
    with pytest.raises(ValidationError, match="flow name"):
        instance_id("acme", "Bad_Name", when)
    with pytest.raises(ValidationError, match="tenant id"):
        instance_id("ac/me", "f", when)


def test_instance_ids_of_distinct_jobs_never_collide():
    when = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert instance_id("acme-eu", "sync", when) != instance_id("acme", "eu-sync", when)
    assert page_key(instance_id("acme-eu", "sync", when), 1) != page_key(
        instance_id("acme", "eu-sync", when), 1
    )
    assert page_key("Workflow-a--b-20261123T140000Z", 12) == "Workflow-a--b-20261123T140000Z/p12"


def test_sanitize_instance_id():
    assert (
        sanitize_instance_id("Workflow-acme-f-20261123T140000Z")
        == "Workflow-acme-f-20261123T140000Z"
    )
    assert sanitize_instance_id("a/b\\c#d?e\x00f\x7fg") == "a-b-c-d-e-f-g"
    assert len(sanitize_instance_id("x" * 300)) == 256


def test_secret_name():
    assert secret_name("acme", "crm", "token") == "tenants--acme--crm--token"
    with pytest.raises(ValidationError, match="secret key"):
        secret_name("acme", "crm", "api_token")
    with pytest.raises(ValidationError, match="tenant id"):
        secret_name("acme-", "crm", "token")


def test_utcnow():
    now = utcnow()
    assert now.utcoffset() == timedelta(0) and now.microsecond == 0
    assert abs(datetime.now(UTC) - now) < timedelta(seconds=2)
