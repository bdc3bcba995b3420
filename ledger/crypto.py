"""Keys for personal data: encryption at rest, card lookup and PIN hashes.

One 32-byte data key lives outside the database: `MEDSWITCH_DATA_KEY`
(64 hex digits, or standard base64 of 32 bytes) or, when unset, the file
`$MEDSWITCH_DATA_DIR/data.key` (created on first use, mode 0600). A stolen
database dump is thus useless without the key. Each purpose gets its own
sub-key derived with HKDF-SHA256, so a leak of one (say the card lookup
pepper) does not expose the others:

- names and national ID numbers: AES-256-GCM, random 96-bit nonce, the
  member id and field name as associated data (a ciphertext moved to another
  row or column does not decrypt);
- card numbers: HMAC-SHA256, so a card is found by an index lookup without
  storing the number;
- PINs: HMAC-SHA256 over member id and PIN, compared in constant time.

Nothing here logs, and the key never leaves this module's objects.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_NAME = "data.key"
KEY_BYTES = 32
NONCE_BYTES = 12


class KeyError_(ValueError):
    """The data key is missing or malformed."""


def parse_key(text: str, source: str = "MEDSWITCH_DATA_KEY") -> bytes:
    """32 bytes from 64 hex digits or base64; KeyError_ naming `source` if neither."""
    text = text.strip()
    if len(text) == 2 * KEY_BYTES:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise KeyError_(f"{source} must hold 32 bytes as 64 hex digits or base64")
    return raw


def load_or_create_key(data_dir: Path, env_value: str | None = None) -> bytes:
    if env_value:
        return parse_key(env_value)
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place:
        # the key file appears complete or not at all, and of two processes
        # starting at once the second reads the first one's key.
        fd, tmp = tempfile.mkstemp(prefix=".data-key-", dir=data_dir)
        try:
            with os.fdopen(fd, "w") as handle:  # mkstemp: 0600
                handle.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # the other process won
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        raise KeyError_(f"{path} must be readable by its owner only (chmod 600)")
    return parse_key(path.read_text("ascii"), source=str(path))


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


class DataKeys:
    """The sub-keys for each purpose, derived from the data key."""

    __slots__ = ("_aead", "_card", "_pin")

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != KEY_BYTES:
            raise KeyError_("the data key must be 32 bytes")
        self._aead = AESGCM(_derive(data_key, b"medswitch/v1/personal-data"))
        self._card = _derive(data_key, b"medswitch/v1/card-lookup")
        self._pin = _derive(data_key, b"medswitch/v1/pin")

    def __repr__(self) -> str:
        return "DataKeys(<secret>)"

    @classmethod
    def from_settings(cls, data_dir: Path, env_value: str | None = None) -> DataKeys:
        if env_value is None:
            env_value = os.environ.get("MEDSWITCH_DATA_KEY") or None
        return cls(load_or_create_key(data_dir, env_value))

    def encrypt(self, plaintext: str, associated: str) -> bytes:
        """nonce || AES-GCM ciphertext+tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), associated.encode())

    def decrypt(self, blob: bytes, associated: str) -> str:
        nonce, body = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        return self._aead.decrypt(nonce, body, associated.encode()).decode()

    def card_lookup(self, card_no: str) -> bytes:
        return hmac.digest(self._card, card_no.encode(), hashlib.sha256)

    def pin_hash(self, member_id: str, pin: str) -> bytes:
        return hmac.digest(self._pin, f"{member_id}\x00{pin}".encode(), hashlib.sha256)

    def pin_matches(self, member_id: str, pin: str, stored: bytes) -> bool:
        return hmac.compare_digest(self.pin_hash(member_id, pin), stored)


async def check_opens_database(keys: DataKeys, conn: Any) -> None:
    """Refuse a data key that did not write this database's personal data.

    A data dir moved without its data.key, or MEDSWITCH_DATA_KEY left out,
    would otherwise get a fresh key silently, and then every card lookup
    would miss (every member CARD_INVALID). One member's encrypted name
    tells: AES-GCM opens it only under the key that sealed it.
    """
    row = await conn.fetchrow("SELECT member_id, name_enc FROM members LIMIT 1")
    if row is None:
        return
    try:
        keys.decrypt(bytes(row["name_enc"]), f"{row['member_id']}:name")
    except InvalidTag:
        raise KeyError_(
            "this data key did not write the database's personal data: give the key it"
            " was imported with (MEDSWITCH_DATA_KEY, or data.key in the data dir)"
        ) from None


def mask_name(name: str) -> str:
    """First character then one `*` per further character (the API's name_masked)."""
    return name[:1] + "*" * (len(name) - 1) if name else ""
