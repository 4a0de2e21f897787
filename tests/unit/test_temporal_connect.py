"""How ratesync reaches Temporal (runtime.temporal_profile / connect) and what the worker says
when a server refuses to register the search attributes. No server: the SDK's envconfig loader
reads real TOML files; the refusing server is a fake operator service."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesResponse
from temporalio.service import RPCError, RPCStatusCode

import runtime
import worker
from settings import Settings

KEY = "tmprl-api-key-do-not-log-5d1c"


@pytest.fixture
def no_temporal_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TEMPORAL_* variable of the machine's, and no default config file of the user's."""
    for name in list(os.environ):
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "temporal.toml"
    path.write_text(text)
    return path


def test_unset_address_is_the_embedded_server_whatever_a_profile_says(
    no_temporal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", KEY)
    assert runtime.temporal_profile(Settings(TEMPORAL_ADDRESS=None)) is None


def test_a_toml_profile_gives_namespace_key_and_tls_at_temporal_address(
    no_temporal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(
        tmp_path,
        f'[profile.default]\naddress = "elsewhere:7233"\nnamespace = "wrong"\n'
        f'[profile.cloud]\naddress = "ns.acct.tmprl.cloud:7233"\nnamespace = "ns.acct"\n'
        f'api_key = "{KEY}"\n[profile.cloud.grpc_meta]\nx-team = "sync"\n',
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(path))
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    profile = runtime.temporal_profile(Settings(TEMPORAL_ADDRESS="ns.acct.tmprl.cloud:7233"))
    assert profile is not None
    assert (profile.address, profile.namespace, profile.api_key) == (
        "ns.acct.tmprl.cloud:7233", "ns.acct", KEY,
    )  # fmt: skip
    connect = profile.to_client_connect_config()
    assert connect["tls"] is True  # an API key turns TLS on, as for the temporal CLI
    assert connect["rpc_metadata"] == {"x-team": "sync"}
    # TEMPORAL_NAMESPACE set wins over the profile's; TEMPORAL_ADDRESS always names the server
    other = runtime.temporal_profile(
        Settings(TEMPORAL_ADDRESS="127.0.0.1:7233", TEMPORAL_NAMESPACE="mine")
    )
    assert other is not None and (other.address, other.namespace) == ("127.0.0.1:7233", "mine")


def test_mtls_files_and_the_environment_s_variables(
    no_temporal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "client.pem").write_text("CERT")
    (tmp_path / "client.key").write_text("KEY")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "ns.acct")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    profile = runtime.temporal_profile(Settings(TEMPORAL_ADDRESS="ns.acct.tmprl.cloud:7233"))
    assert profile is not None and profile.namespace == "ns.acct" and profile.api_key is None
    tls = profile.to_client_connect_config()["tls"]
    assert not isinstance(tls, bool)
    assert (tls.client_cert, tls.client_private_key) == (b"CERT", b"KEY")


def test_a_broken_config_file_is_one_line_without_its_contents(
    no_temporal_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = _toml(tmp_path, f'[profile.default]\naddress = "x:1"\napi_key = "{KEY}\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(path))
    with pytest.raises(runtime.TemporalConfigError) as caught:
        runtime.temporal_profile(Settings(TEMPORAL_ADDRESS="127.0.0.1:7233"))
    message = str(caught.value)
    assert KEY not in message and "\n" not in message
    assert "TOML parse error at line 3" in message and "TEMPORAL_CONFIG_FILE" in message
    assert caught.value.exit_code == 2
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(_toml(tmp_path, "[profile.default]\n")))
    monkeypatch.setenv("TEMPORAL_PROFILE", "nope")
    with pytest.raises(runtime.TemporalConfigError, match="Profile 'nope' not found"):
        runtime.temporal_profile(Settings(TEMPORAL_ADDRESS="127.0.0.1:7233"))


async def test_the_api_key_never_shows_in_a_connect_error(
    no_temporal_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuses(**options: Any) -> None:
        assert options["api_key"] == KEY  # it is sent
        raise RuntimeError(f"Failed client connect: bad header Bearer {KEY}")

    monkeypatch.setenv("TEMPORAL_API_KEY", KEY)
    monkeypatch.setattr(runtime.Client, "connect", refuses)
    with pytest.raises(RuntimeError) as caught:
        await runtime.connect_configured(Settings(TEMPORAL_ADDRESS="127.0.0.1:1"), "127.0.0.1:1")
    assert KEY not in str(caught.value) and "<TEMPORAL_API_KEY>" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


class _Operator:
    def __init__(self, have: list[str], refuse_list: bool = False) -> None:
        self.have, self.refuse_list = have, refuse_list

    async def list_search_attributes(self, request: Any) -> ListSearchAttributesResponse:
        if self.refuse_list:
            raise RPCError("no operator API", RPCStatusCode.UNIMPLEMENTED, b"")
        return ListSearchAttributesResponse(
            custom_attributes={n: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for n in self.have}
        )

    async def add_search_attributes(self, request: Any) -> None:
        raise RPCError("Request unauthorized.", RPCStatusCode.PERMISSION_DENIED, b"")


def _client(operator: _Operator) -> Any:
    return SimpleNamespace(namespace="ns.acct", operator_service=operator)


async def test_a_server_that_refuses_to_add_them_is_one_line_naming_temporal_setup() -> None:
    with pytest.raises(runtime.RuntimeStartError) as caught:
        await worker._check_search_attributes(_client(_Operator(["Provider"])), "cloud:7233")
    line = str(caught.value)
    assert "\n" not in line and caught.value.exit_code == 1
    assert "search attributes Scope, SyncKind are not registered in namespace 'ns.acct'" in line
    assert "PERMISSION_DENIED" in line and "`python starter.py temporal setup`" in line
    assert "RPCError" not in line and "no mapping" not in line


async def test_a_server_without_the_operator_api_is_one_line_too() -> None:
    with pytest.raises(runtime.RuntimeStartError) as caught:
        await worker._check_search_attributes(_client(_Operator([], refuse_list=True)), "x:1")
    line = str(caught.value)
    assert "\n" not in line and "UNIMPLEMENTED" in line and "temporal setup" in line


async def test_nothing_to_add_is_silent() -> None:
    operator = _Operator(list(runtime.SEARCH_ATTRIBUTES))
    await worker._check_search_attributes(_client(operator), "x:1")  # add would raise
