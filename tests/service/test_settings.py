"""Settings: one pydantic-settings object; flags > POINTSERVE_* environment > config file > defaults."""

from __future__ import annotations

import json

import pytest

from pointserve.errors import ConfigError
from pointserve.service.settings import load_settings


def test_defaults():
    settings = load_settings()
    assert settings.max_points == 1_000_000 and settings.api_key is None
    assert settings.batching.max_batch_size == 32 and settings.batching.max_queue_delay_ms == 0.0


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    config = tmp_path / "serve.yaml"
    config.write_text(
        "port: 9000\nmax_points: 5000\nbatching: {max_batch_size: 4, max_queue_delay_ms: 7}\n"
        "models:\n  shapes-cls: {variant: int8, min_points: 16, batching: {max_batch_size: 64}}\n"
    )
    monkeypatch.setenv("POINTSERVE_MAX_POINTS", "6000")
    monkeypatch.setenv("POINTSERVE_BATCHING__MAX_QUEUE_DELAY_MS", "9")
    settings = load_settings(config, port=9100)
    assert settings.port == 9100  # flag
    assert settings.max_points == 6000  # environment over file
    assert settings.batching.max_queue_delay_ms == 9  # nested environment variable over file
    assert settings.batching.max_batch_size == 4  # file
    per_model = settings.batching_for("shapes-cls")
    assert per_model.max_batch_size == 64 and per_model.max_queue_delay_ms == 9
    assert settings.batching_for("other").max_batch_size == 4
    assert settings.model_settings("shapes-cls").variant == "int8"
    assert settings.model_settings("shapes-cls").min_points == 16


def test_json_config_file_and_secret_api_key(tmp_path):
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"api_key": "s3cret", "models": {"m": {"precision": "fp16"}}}))
    settings = load_settings(config)
    assert settings.api_key.get_secret_value() == "s3cret" and "s3cret" not in repr(settings)
    assert settings.model_settings("m").precision == "fp16"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("batching: {max_batch_size: 0}", "batching.max_batch_size"),
        ("port: eighty", "port"),
        ("max_point: 5", "max_point"),
        ("models: {m: {precision: fp8}}", "models.m.precision"),
        ("models: {m: {batching: {max_queue_size: -1}}}", "max_queue_size"),
        ("api_key: '  '", "api_key is empty"),
        ("- a list", "must hold a mapping"),
        ("port: [unclosed", "not a readable YAML file"),
    ],
)
def test_invalid_settings_are_one_clear_config_error(tmp_path, text, needle):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=None) as caught:
        load_settings(config)
    assert needle in str(caught.value)


def test_invalid_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("POINTSERVE_BATCHING__REQUEST_TIMEOUT_S", "-3")
    with pytest.raises(ConfigError, match="batching.request_timeout_s"):
        load_settings()


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
