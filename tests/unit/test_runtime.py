"""Embedded servers: a port held by another program is a clear error, not a silent reuse."""

from __future__ import annotations

import socket

import pytest

import runtime


def test_port_taken_by_another_program_is_a_clear_error(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(runtime.RuntimeStartError) as err:
            runtime.start_postgres(tmp_path, port)
        assert f"port {port} is already in use" in str(err.value)
        assert "EMBEDDED_POSTGRES_PORT" in str(err.value)
        with pytest.raises(runtime.RuntimeStartError) as err:
            runtime.start_temporal(tmp_path, port, runtime.free_port())
        assert "EMBEDDED_TEMPORAL_PORT" in str(err.value)


def test_binaries_come_from_the_installed_wheels():
    assert runtime.temporal_binary().endswith("temporal")
    assert runtime.temporal_test_server_binary().endswith("temporal-test-server")
    assert runtime._pg_bin("postgres").endswith("pginstall/bin/postgres")
