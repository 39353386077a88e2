"""Settings: read and range-checked once, each bad value named; no SQLite by accident on Azure."""

from __future__ import annotations

import pytest

from datasync.config import Settings
from datasync.exceptions import ConfigError

AZURE = {"WEBSITE_INSTANCE_ID": "abc123"}
CLOUD = {
    "COSMOS_ENDPOINT": "https://x.documents.azure.com",
    "KEYVAULT_URL": "https://v.vault.azure.net",
    "AzureWebJobsStorage__accountName": "st",
}


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (
        s.scan_schedule,
        s.pages_per_generation,
        s.requeue_delay,
        s.http.attempts,
        s.activity_workers,
        s.log_level,
        s.queue_retry_delay,
        s.on_azure,
    ) == ("0 0 * * * *", 10, 30.0, 5, 4, "INFO", None, False)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATASYNC_PAGES_PER_GENERATION", "ten", "DATASYNC_PAGES_PER_GENERATION must be a whole"),
        ("DATASYNC_PAGES_PER_GENERATION", "0", "between 1 and 1000"),
        ("DATASYNC_HTTP_ATTEMPTS", "0", "DATASYNC_HTTP_ATTEMPTS must be between"),
        ("DATASYNC_HTTP_TIMEOUT", "-1", "DATASYNC_HTTP_TIMEOUT"),
        ("DATASYNC_REQUEUE_DELAY", "soon", "DATASYNC_REQUEUE_DELAY must be a number"),
        ("DATASYNC_ACTIVITY_WORKERS", "1000", "DATASYNC_ACTIVITY_WORKERS"),
        ("DATASYNC_LOG_LEVEL", "LOUD", "DATASYNC_LOG_LEVEL must be one of"),
        ("COSMOS_VERIFY_TLS", "maybe", "COSMOS_VERIFY_TLS must be true or false"),
        ("DATASYNC_SCAN_SCHEDULE", "0 0 * * *", "DATASYNC_SCAN_SCHEDULE: cron"),
    ],
)
def test_a_bad_setting_is_named(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_env({name: value})


def test_on_azure_a_missing_port_setting_stops_the_app() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**AZURE, "COSMOS_ENDPOINT": "https://x"}).check_cloud()
    assert "KEYVAULT_URL" in str(info.value) and "AzureWebJobsStorage" in str(info.value)
    assert "COSMOS_ENDPOINT" not in str(info.value)
    Settings.from_env({**AZURE, **CLOUD}).check_cloud()  # all set: fine
    Settings.from_env({}).check_cloud()  # not on Azure: embedded ok
    Settings.from_env({"CONTAINER_NAME": "x"}).check_cloud()  # any container is not Azure


def test_app_from_settings_refuses_to_fall_back_to_sqlite_on_azure(tmp_path) -> None:
    from datasync.app import App

    with pytest.raises(ConfigError, match="COSMOS_ENDPOINT"):
        App.from_settings(
            Settings.from_env(
                {
                    "CONTAINER_NAME": "app",
                    "WEBSITE_SITE_NAME": "datasync",
                    "DATASYNC_HOME": str(tmp_path),
                }
            )
        )
    assert not any(tmp_path.iterdir())  # nothing written


def test_repr_shows_no_secret() -> None:
    s = Settings.from_env(
        {
            "COSMOS_KEY": "k3y-value",
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=s3cr3t",
        }
    )
    assert "k3y-value" not in repr(s) and "s3cr3t" not in repr(s)
