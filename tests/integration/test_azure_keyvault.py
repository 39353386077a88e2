"""The Key Vault secret store through the real ``SecretClient``, against the local HTTPS
Key Vault test server (401 challenge, then bearer token)."""

from __future__ import annotations

import pytest

from datasync.adapters.azure.keyvault import KeyVaultSecretStore
from datasync.config import Settings
from datasync.exceptions import ConfigError, SecretNotFound, ValidationError

pytestmark = pytest.mark.emulator


@pytest.fixture
def store(keyvault_server):
    from keyvault_server import FakeCredential

    keyvault_server.secrets.clear()  # one server per session, a clean vault per test
    credential = FakeCredential()
    s = KeyVaultSecretStore(
        keyvault_server.url,
        credential=credential,
        verify_challenge_resource=False,
        connection_verify=False,
    )
    s.credential = credential
    yield s
    s.close()


def test_set_then_get_uses_the_naming_rule_and_a_bearer_token(store, keyvault_server):
    store.set("acme", "crm", "token", "s3cr3t-v1")
    assert store.get("acme", "crm", "token") == "s3cr3t-v1"
    assert [v[1] for v in keyvault_server.secrets["tenants--acme--crm--token"]] == ["s3cr3t-v1"]
    assert ("https://vault.azure.net/.default",) in store.credential.scopes

    store.set("acme", "crm", "token", "s3cr3t-v2")  # a new version wins
    assert store.get("acme", "crm", "token") == "s3cr3t-v2"
    assert any(
        path.startswith("/secrets/tenants--acme--crm--token/")
        for method, path in keyvault_server.requests
        if method == "GET"
    )


def test_missing_secret_hides_the_sdk_error(store):
    """The 404 from the vault becomes SecretNotFound with no SDK error chained to it (its
    text would carry the request URL); the message itself is covered in tests/contract."""
    with pytest.raises(SecretNotFound) as err:
        store.get("acme", "crm", "token")
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_bad_names_are_rejected_before_any_request(store, keyvault_server):
    before = len(keyvault_server.requests)
    with pytest.raises(ValidationError):
        store.get("acme", "c--rm", "token")
    with pytest.raises(ValidationError):
        store.set("acme/x", "crm", "token", "v")
    assert len(keyvault_server.requests) == before


def test_factory_needs_an_https_vault_url():
    from datasync.adapters.azure import keyvault_secret_store

    with pytest.raises(ConfigError, match="KEYVAULT_URL"):
        keyvault_secret_store(Settings())
    with pytest.raises(ConfigError, match="https://"):
        keyvault_secret_store(Settings(keyvault_url="http://vault.example"))
