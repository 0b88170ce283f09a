"""Personal text in the read models, sealed as the event store seals it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from eventsourcing.persistence import Cipher


class Sealer:
    """Keeps personal text in the read models as encrypted as the event store.

    Without a cipher it changes nothing. With one, text is stored encrypted,
    and an owner is found by a keyed hash of their email instead.
    """

    PREFIX = "sealed:"

    def __init__(self, cipher: Cipher | None, cipher_key: str | None) -> None:
        self.cipher = cipher
        self._hash_key = base64.b64decode(cipher_key) if cipher and cipher_key else None

    def seal(self, text: str | None) -> str | None:
        """The text as stored."""
        if self.cipher is None or not text:
            return text
        sealed = self.cipher.encrypt(text.encode())
        return self.PREFIX + base64.b64encode(sealed).decode()

    def open(self, stored: str | None) -> str | None:
        """The text as it was before sealing."""
        if self.cipher is None or not stored or not stored.startswith(self.PREFIX):
            return stored
        sealed = base64.b64decode(stored.removeprefix(self.PREFIX))
        return self.cipher.decrypt(sealed).decode()

    def lookup_key(self, email: str) -> str:
        """What an owner's accounts are indexed by."""
        if self._hash_key is None:
            return email
        return hmac.new(self._hash_key, email.encode(), hashlib.sha256).hexdigest()

    def seal_metadata(self, metadata: Mapping[str, str] | None) -> str | None:
        """Metadata as stored: sealed JSON, or None when there is none."""
        if not metadata:
            return None
        return self.seal(json.dumps(metadata, separators=(",", ":")))

    def open_metadata(self, stored: str | None) -> dict[str, str]:
        """Metadata as it was recorded ({} when there is none)."""
        text = self.open(stored)
        return json.loads(text) if text else {}
