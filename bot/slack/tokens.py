"""Slack tokens encrypted at rest with the Fernet keys of SLACK_TOKEN_KEYS, and re-encrypting
the stored ones under the newest key (`taskjuice-bot rotate-token-keys`)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.errors import BotError, SettingsError
from store import token_keys
from store.database import Connections

__all__ = ["TokenCipher", "TokenKeyMissing", "rotate_token_keys"]


class TokenKeyMissing(BotError):
    """A stored Slack token was encrypted with a key that SLACK_TOKEN_KEYS no longer holds."""


class TokenCipher:
    """Encrypts Slack tokens at rest with the Fernet keys of SLACK_TOKEN_KEYS.

    The setting lists keys oldest first (like LINK_SECRETS): the last encrypts, all decrypt.
    MultiFernet wants the newest first, hence the reversal.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SettingsError("SLACK_TOKEN_KEYS: at least one Fernet key is required")
        fernets = []
        for position, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key.strip()))
            except (ValueError, TypeError):
                # The message names the position only: never echo key material.
                raise SettingsError(
                    f"SLACK_TOKEN_KEYS: key {position} of {len(keys)} is not a Fernet key"
                    " (32 bytes, URL-safe base64)"
                ) from None
        self._fernet = MultiFernet(list(reversed(fernets)))

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        """The cipher of a comma-separated SLACK_TOKEN_KEYS value."""
        return cls([key for key in (k.strip() for k in value.split(",")) if key])

    def encrypt(self, token: str | None) -> str | None:
        if token is None:
            return None
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def decrypt(self, ciphertext: str | None) -> str | None:
        if ciphertext is None:
            return None
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except InvalidToken:
            raise TokenKeyMissing() from None

    def rotate(self, ciphertext: str) -> str:
        """The same token, encrypted under the newest key."""
        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise TokenKeyMissing() from None


async def rotate_token_keys(connections: Connections, cipher: TokenCipher) -> int:
    """Re-encrypt every stored token under the newest key; return how many rows changed.

    Safe while the service runs: each row is rewritten under its lock.
    """
    changed = 0
    for table in token_keys.ENCRYPTED_COLUMNS:
        async with connections.acquire() as conn:
            ids = await token_keys.encrypted_row_ids(conn, table)
        for row_id in ids:
            async with connections.acquire() as conn:
                changed += await token_keys.reencrypt_row(conn, table, row_id, cipher.rotate)
    return changed
