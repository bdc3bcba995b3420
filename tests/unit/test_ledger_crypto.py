"""Data keys: where they come from, and what each sub-key protects."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from ledger.accounts import settlement_postings
from ledger.crypto import DataKeys, KeyError_, load_or_create_key, mask_name, parse_key


def test_key_accepts_hex_and_base64_of_32_bytes_only() -> None:
    raw = bytes(range(32))
    assert parse_key(raw.hex()) == raw
    assert parse_key(base64.b64encode(raw).decode()) == raw
    for bad in ("", "abc", raw.hex()[:-2], base64.b64encode(raw[:16]).decode()):
        with pytest.raises(KeyError_):
            parse_key(bad)


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_or_create_key(tmp_path)
    assert stat.S_IMODE((tmp_path / "data.key").stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == first
    (tmp_path / "data.key").chmod(0o644)
    with pytest.raises(KeyError_, match="chmod 600"):
        load_or_create_key(tmp_path)
    assert load_or_create_key(tmp_path, "11" * 32) == b"\x11" * 32


def test_ciphertext_is_bound_to_its_row_and_field() -> None:
    keys = DataKeys(b"k" * 32)
    blob = keys.encrypt("王秀英", "M0002:name")
    assert keys.decrypt(blob, "M0002:name") == "王秀英"
    assert keys.encrypt("王秀英", "M0002:name") != blob  # fresh nonce
    with pytest.raises(InvalidTag):
        keys.decrypt(blob, "M0003:name")
    with pytest.raises(InvalidTag):
        DataKeys(b"x" * 32).decrypt(blob, "M0002:name")


def test_pin_and_card_hashes_are_keyed_and_distinct() -> None:
    keys, other = DataKeys(b"k" * 32), DataKeys(b"j" * 32)
    assert keys.pin_matches("M1", "1234", keys.pin_hash("M1", "1234"))
    assert not keys.pin_matches("M1", "1235", keys.pin_hash("M1", "1234"))
    assert not keys.pin_matches("M2", "1234", keys.pin_hash("M1", "1234"))
    assert keys.card_lookup("C1") != other.card_lookup("C1")
    assert keys.card_lookup("1234") != keys.pin_hash("", "1234")
    assert "k" not in repr(keys)


def test_masked_names_keep_only_the_first_character() -> None:
    assert [mask_name(n) for n in ("张伟", "欧阳娜娜", "", "A")] == ["张*", "欧***", "", "A"]


@pytest.mark.parametrize("pooled,serious,account", [(0, 0, 0), (100, 0, 0), (7, 8, 9)])
def test_settlement_postings_balance(pooled: int, serious: int, account: int) -> None:
    legs = settlement_postings(
        "M1",
        "H1",
        pooled_fund_fen=pooled,
        serious_illness_fen=serious,
        individual_account_fen=account,
    )
    assert sum(a for _, a in legs) == 0
    assert all(a != 0 for _, a in legs)
    assert len(legs) == (
        0
        if pooled + serious + account == 0
        else 1 + sum(1 for v in (pooled, serious, account) if v)
    )
    with pytest.raises(ValueError, match="pooled_fund_fen"):
        settlement_postings(
            "M1", "H1", pooled_fund_fen=-1, serious_illness_fen=0, individual_account_fen=0
        )


def test_processes_starting_at_once_share_one_complete_key(tmp_path: Path) -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(load_or_create_key, [tmp_path] * 8))
    assert len(set(keys)) == 1 and len(keys[0]) == 32
    assert [p.name for p in tmp_path.iterdir()] == ["data.key"]  # no temporary file left


def test_an_empty_key_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "data.key").write_text("")
    (tmp_path / "data.key").chmod(0o600)
    with pytest.raises(KeyError_, match=r"data\.key must hold 32 bytes"):
        load_or_create_key(tmp_path)
