"""The pause's details next to the flag: encoding and decoding (no Redis)."""

from __future__ import annotations

from shared.redis.pause import PauseInfo, decode_info, encode_info


def test_details_round_trip_through_the_script_arguments() -> None:
    info = PauseInfo(by="operator", reason="provider incident #42", since_ms=1_700_000_000_123)
    stored = [a.encode() for a in encode_info(info)]  # what HMGET gives back
    assert decode_info(b"1", stored) == info


def test_no_flag_is_no_pause_whatever_details_are_left() -> None:
    assert decode_info(None, [b"operator", b"x", b"1"]) is None
    assert decode_info(b"0", [None, None, None]) is None


def test_a_flag_without_details_is_a_pause_by_nobody_known() -> None:
    assert decode_info(b"1", [None, None, None]) == PauseInfo("unknown", "", 0)
    assert decode_info("1", []) == PauseInfo("unknown", "", 0)
    assert decode_info(b"1", [b"operator", b"why", b"not-a-time"]).since_ms == 0  # type: ignore[union-attr]
