"""Real servers (Dovecot) and network fault injection used by the integration tests."""

from tests.servers.dovecot import Dovecot, DovecotError, find_binary
from tests.servers.proxy import FaultProxy

__all__ = ["Dovecot", "DovecotError", "FaultProxy", "find_binary"]
