"""SecretStore contract: Key Vault naming, newest value wins, SecretNotFound without values."""

from __future__ import annotations

import pytest

from datasync.exceptions import SecretNotFound, ValidationError


def test_set_then_get_and_a_new_value_wins(backend):
    backend.secrets.set("acme", "crm", "token", "s3cr3t-v1")
    assert backend.secrets.get("acme", "crm", "token") == "s3cr3t-v1"
    backend.secrets.set("acme", "crm", "token", "s3cr3t-v2")
    assert backend.secrets.get("acme", "crm", "token") == "s3cr3t-v2"
    backend.secrets.set("acme-eu", "crm", "token", "other")  # names never collide
    assert backend.secrets.get("acme", "crm", "token") == "s3cr3t-v2"


def test_missing_secret_names_tenant_system_key_and_no_value(backend):
    backend.secrets.set("acme", "crm", "password", "hunter2-value")
    with pytest.raises(SecretNotFound) as err:
        backend.secrets.get("acme", "crm", "token")
    text = str(err.value)
    assert "acme" in text and "crm" in text and "token" in text and "hunter2" not in text
    assert (err.value.tenant, err.value.system, err.value.key) == ("acme", "crm", "token")
    assert "hunter2" not in repr(backend.secrets)


def test_bad_names_are_rejected(backend):
    with pytest.raises(ValidationError, match="contains '--'"):
        backend.secrets.get("acme", "c--rm", "token")
    with pytest.raises(ValidationError):
        backend.secrets.set("acme/x", "crm", "token", "v")
