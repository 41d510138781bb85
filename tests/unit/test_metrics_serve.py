"""/metrics listens on loopback unless SLUICE_METRICS_HOST says otherwise."""

from __future__ import annotations

import socket

import httpx
import pytest

from shared.errors import ConfigError
from shared.metrics import serve
from shared.settings import CommonSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def test_settings_default_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_METRICS_HOST", raising=False)
    assert CommonSettings().metrics_host == "127.0.0.1"
    monkeypatch.setenv("SLUICE_METRICS_HOST", "0.0.0.0")
    assert CommonSettings().metrics_host == "0.0.0.0"


def test_serve_binds_loopback_only_by_default() -> None:
    port = free_port()
    serve(port)
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    # Bound to 0.0.0.0 the port would be taken on every address; bound to 127.0.0.1
    # another loopback address can still have it.
    assert bindable("127.0.0.2", port)


def test_a_taken_port_is_a_config_error_naming_the_settings() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = int(s.getsockname()[1])
        with pytest.raises(ConfigError) as err:
            serve(port)
    assert str(err.value) == (
        f"SLUICE_METRICS_PORT: cannot listen on 127.0.0.1:{port} (SLUICE_METRICS_HOST): "
        "Address already in use"
    )
