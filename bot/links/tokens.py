"""Magic-link tokens and confirmation-form nonces (itsdangerous, a salt per purpose).

A link token is the signed id of a `magic_links` row: short, and carrying no personal data
(a token is signed, not encrypted). Everything it stands for — task, approver, tier, content,
expiry, whether it was used — is looked up in the database, so the database clock decides.
`LINK_SECRETS` lists keys oldest first: the last one signs, all of them verify.
"""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeSerializer

__all__ = ["LinkSigner"]

_LINK_SALT = "taskjuice.magic-link.decide"
_FORM_SALT = "taskjuice.magic-link.form"
_WORD_SALT = b"taskjuice.magic-link.confirm-word"
_WORDS = (
    "anchor",
    "beacon",
    "cobalt",
    "delta",
    "ember",
    "falcon",
    "garnet",
    "harbor",
    "island",
    "juniper",
    "kestrel",
    "lantern",
    "meadow",
    "nickel",
    "orchid",
    "pepper",
    "quartz",
    "raven",
    "saffron",
    "timber",
    "umber",
    "velvet",
    "willow",
    "yonder",
    "zephyr",
)


class LinkSigner:
    """Signs and reads link tokens and form nonces with the `LINK_SECRETS` keys."""

    def __init__(self, secrets: tuple[str, ...], *, form_max_age: int = 3600) -> None:
        if not secrets:
            raise ValueError("LINK_SECRETS is empty")
        keys = list(secrets)  # oldest first; itsdangerous signs with the last
        self._links = URLSafeSerializer(keys, salt=_LINK_SALT)
        self._forms = TimestampSigner(keys, salt=_FORM_SALT)
        self._word_key = secrets[-1].encode()
        self._form_max_age = form_max_age

    def token(self, link_id: int) -> str:
        return str(self._links.dumps(link_id))

    def link_id(self, token: str) -> int | None:
        """The link a token stands for, or None if it was not signed by us."""
        if len(token) > 200:
            return None
        try:
            value = self._links.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def nonce(self, link_id: int) -> str:
        """A form nonce for one link's confirmation page, valid for an hour."""
        return self._forms.sign(str(link_id)).decode()

    def nonce_ok(self, link_id: int, nonce: str) -> bool:
        try:
            value = self._forms.unsign(nonce, max_age=self._form_max_age)
        except (SignatureExpired, BadSignature):
            return False
        return hmac.compare_digest(value, str(link_id).encode())

    def confirm_word(self, link_id: int) -> str:
        """The word a person types to approve an irreversible action from this link."""
        digest = hmac.new(self._word_key + _WORD_SALT, str(link_id).encode(), hashlib.sha256)
        return _WORDS[digest.digest()[0] % len(_WORDS)]
