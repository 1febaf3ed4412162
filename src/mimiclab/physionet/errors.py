"""What can go wrong between the user and PhysioNet, each with the step that fixes it.

Messages never contain a password: they are built from usernames, URLs and file names only.
"""

from __future__ import annotations

from mimiclab.errors import MimiclabError


class PhysioNetError(MimiclabError):
    """Base of every downloader / access failure."""


class CredentialsError(PhysioNetError):
    """Credentials could not be read or stored."""


class InsecureAuthError(PhysioNetError):
    """Refused to send a password over plain HTTP to a non-loopback host."""


class AuthError(PhysioNetError):
    """HTTP 401: missing or wrong username/password (or a User-Agent PhysioNet refuses)."""


class AccessDeniedError(PhysioNetError):
    """HTTP 403: a known PhysioNet user without access to this dataset version."""


class NotFoundError(PhysioNetError):
    """HTTP 404 (or a missing file in a local mirror)."""


class UnreachableError(PhysioNetError):
    """The server could not be reached after retries."""


class ChecksumError(PhysioNetError):
    """A file's bytes did not match SHA256SUMS.txt, twice."""


class InsufficientSpaceError(PhysioNetError):
    """Not enough free disk space at the destination for the planned download."""


class DownloadError(PhysioNetError):
    """Some files failed; the others are in place and partial files are kept for resuming."""

    def __init__(self, message: str, failures: dict[str, str] | None = None):
        super().__init__(message)
        self.failures = dict(failures or {})
