"""What every integration test shares beyond tests/conftest.py."""

from tests.integration.embedded_support import no_shared_server_left

__all__ = ["no_shared_server_left"]  # a session fixture: shared servers left running stop
