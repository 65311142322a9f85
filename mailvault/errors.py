"""One exception tree for mailvault.

Every error the core raises on purpose is a :class:`MailvaultError`. Each class
carries the process exit code the CLI uses and a one-line message meant for a
human; the CLI prints ``mailvault: <message>`` and exits with ``exit_code``.

::

    MailvaultError (2)
    ├── ConfigError            bad option, bad config file, bad URL
    ├── PasswordError          no password available / wrong password
    ├── VaultError             a vault cannot be used as asked
    │   ├── VaultNotFound
    │   ├── VaultExists
    │   ├── FormatError        unknown format version, unreadable object
    │   ├── IntegrityError     authentication, decompression or hash mismatch
    │   ├── LockedError        another process holds an incompatible lock
    │   ├── SnapshotNotFound   no such snapshot / ambiguous prefix
    │   └── IndexError_        the local search index is unusable
    ├── StorageError           a backend operation failed
    │   ├── ObjectNotFound
    │   ├── ObjectExists       conditional create lost the race
    │   └── StorageFull        no space left on the device / quota
    ├── SourceError            a mail source cannot be read
    ├── RemoteError            talking to a mail server failed
    │   ├── ConnectError       host unreachable, connection refused or dropped
    │   ├── TLSError           certificate not trusted, no STARTTLS where required
    │   ├── AuthError          login refused (LoginRequired: OAuth2 sign-in needed)
    │   └── ProtocolError      the server answered something unusable
    ├── ExportError            a destination cannot be written
    └── QueryError             a search query does not parse (names the token)

Exit codes: 0 ok, 1 partial (the run finished but something was skipped or
damaged), 2 error (nothing, or not all that was asked, was done).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_ERROR = 2


class MailvaultError(Exception):
    """Base of every error mailvault raises on purpose."""

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(MailvaultError):
    """A bad option, configuration file or URL."""


class PasswordError(MailvaultError):
    """No password could be obtained, or the password is wrong."""


class VaultError(MailvaultError):
    """The vault cannot be used as asked."""


class VaultNotFound(VaultError):
    """There is no vault at the given location."""


class VaultExists(VaultError):
    """A vault (or other data) already exists where init was asked to create one."""


class FormatError(VaultError):
    """An object in the vault has an unknown version or cannot be parsed."""


class IntegrityError(VaultError):
    """Stored data failed authentication, decompression or its hash check."""


class LockedError(VaultError):
    """Another process holds a lock that conflicts with this operation."""


class SnapshotNotFound(VaultError):
    """No snapshot matches, or a prefix matches more than one."""


class StorageError(MailvaultError):
    """A storage backend operation failed."""


class ObjectNotFound(StorageError):
    """The object does not exist in the backend."""


class ObjectExists(StorageError):
    """A create-only write found the object already present."""


class StorageFull(StorageError):
    """The backend has no space left."""


class SourceError(MailvaultError):
    """A mail source (file tree, server) cannot be read."""


class ExportError(MailvaultError):
    """An export destination cannot be written."""


class RemoteError(MailvaultError):
    """Talking to a mail server failed."""


class ConnectError(RemoteError):
    """The server cannot be reached, or the connection broke."""


class TLSError(RemoteError):
    """TLS could not be established safely (untrusted certificate, no STARTTLS)."""


class AuthError(RemoteError):
    """The server refused the login."""


class ProtocolError(RemoteError):
    """The server answered something that cannot be used."""


class LoginRequired(AuthError):
    """OAuth2: no usable token (never signed in, refresh token revoked or expired): sign in again."""


class QueryError(MailvaultError):
    """A search query cannot be parsed; the message names the offending token."""


class IndexError_(VaultError):
    """The local search index cannot be opened or used (rebuild it with ``index --rebuild``)."""
