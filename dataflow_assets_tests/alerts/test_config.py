"""alerts.yaml and DATAFLOW_ALERT_* validation: clear errors naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow_assets.alerts.config import AlertConfigError, load_alert_config

URL = "https://hooks.example.com/services/T0/B0/secret"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    return path


def test_a_file_configures_both_channels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "webhook:\n  url_env: HOOK\n"
        "email:\n  host: smtp.example.com\n  username: u\n  password_env: PW\n"
        "  from: a@example.com\n  to: [b@example.com]\n",
    )
    config = load_alert_config(path, {"HOOK": URL, "PW": "pw-1"})
    assert config is not None and config.webhook and config.email
    assert config.email.port == 587 and config.email.starttls
    assert config.webhook_url({"HOOK": URL}) == URL
    assert set(config.secrets({"HOOK": URL, "PW": "pw-1"})) == {URL, "pw-1"}


def test_nothing_configured_means_no_alerts(tmp_path: Path) -> None:
    assert load_alert_config(tmp_path / "absent.yaml", {}) is None


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("webhook:\n  url: https://x\n", {}, "webhook.url: secrets are never written"),
        ("webhook: {}\n", {}, "webhook.url_env: DATAFLOW_ALERT_WEBHOOK_URL is not set"),
        ("webhook: {}\n", {"DATAFLOW_ALERT_WEBHOOK_URL": "ftp://x"}, "is not an http(s) URL"),
        ("{}\n", {}, "configure a webhook, an email, or both"),
        ("webhook: {}\nsms: {}\n", {"DATAFLOW_ALERT_WEBHOOK_URL": URL}, "sms: Extra inputs"),
        (
            "email:\n  host: h\n  from: a@b.c\n  to: []\n",
            {},
            "email.to: List should have at least 1 item",
        ),
        (
            "email:\n  host: h\n  from: a@b.c\n  to: [x@y.z]\n  password: p\n",
            {},
            "email.password: secrets are never written",
        ),
        (
            "email:\n  host: h\n  from: a@b.c\n  to: [x@y.z]\n  username: u\n  password_env: P\n",
            {},
            "email.password_env: P is not set",
        ),
        ("- webhook\n", {}, "expected a mapping"),
        ("webhook: [\n", {}, "cannot read it"),
    ],
)
def test_bad_configuration_names_the_file_and_the_key(
    tmp_path: Path, text: str, env: dict[str, str], expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(AlertConfigError) as error:
        load_alert_config(path, env)
    assert str(error.value).startswith(str(path)), error.value
    assert expected in str(error.value)
    assert "secret" not in str(error.value).replace("secrets are never", "")  # no value echoed


def test_environment_variables_alone(tmp_path: Path) -> None:
    env = {
        "DATAFLOW_ALERT_SMTP_HOST": "smtp.example.com",
        "DATAFLOW_ALERT_SMTP_PORT": "2525",
        "DATAFLOW_ALERT_SMTP_STARTTLS": "false",
        "DATAFLOW_ALERT_SMTP_FROM": "a@example.com",
        "DATAFLOW_ALERT_SMTP_TO": "b@example.com, c@example.com",
    }
    config = load_alert_config(tmp_path / "absent.yaml", env)
    assert config is not None and config.webhook is None and config.email is not None
    assert (config.email.port, config.email.starttls) == (2525, False)
    assert config.email.to == ["b@example.com", "c@example.com"]
    with pytest.raises(AlertConfigError, match=r"environment \(DATAFLOW_ALERT_\*\): email.port"):
        load_alert_config(tmp_path / "absent.yaml", {**env, "DATAFLOW_ALERT_SMTP_PORT": "x"})
