"""CPR and number redaction (typed, grouped, spoken as ASR writes it), caller hashing, the salt."""

from __future__ import annotations

import os
import stat

import pytest

from voicebot.privacy import (CPR, NUMBER, caller_hash, caller_tail, danish_mobile, is_cpr,
                              normalize_number, record_salt, redact)

CPR_FORMS = [
    "010190-1234",
    "0101901234",
    "01 01 90 12 34",
    "010190 1234",
    "010190 - 1234",
    "0101 90 1234",
    "311299–4321",                                           # en dash
    "nul et et to ni fem en to tre fire",                    # digit by digit (011295-1234)
    "nul en nul en halvfems tolv fireogtredive",             # in pairs, as people say it
    "nul en nul en halvfems tolv fire og tredive",
    "Nul En, nul en, halvfems, tolv, fireogtredive",         # ASR punctuation and capitals
    "nul en nul en halvfems streg tolv fireogtredive",       # "dash" said out loud
    "01 01 halvfems 12 34",                                  # words and digits mixed
    "femten elleve firs ni otte syv seks",                   # 151180-9876
    "tyve tolv halvfjerds enoghalvtreds treogtres",          # 201270-5163
    "elleve nul tre toogfyrre femogtyve nul otte",           # 110342-2508
    "otte og tyve nul to tres tretten syvoghalvfems",        # 280260-1397
    "ti ti ti ti ti",                                        # 101010-1010
    "nul fem nul seks firsindstyve nitten nul syv",          # 050680-1907
    "et to nul tre halvtreds seksten sytten",                # 120350-1617
    "toogtyve nul fire syvogtres atten nioghalvfems",        # 220467-1899
    "nul ni ti atten nul nul nul nul",                       # 091018-0000
    "enogtredive tolv nioghalvfems fjorten nul tre",         # 311299-1403
    "nul ét nul ét halvfems tolv fireogtredive",             # accents
]


@pytest.mark.parametrize("text", CPR_FORMS)
def test_cpr_forms_are_redacted(text):
    out = redact(f"mit cpr-nummer er {text} tak")
    assert out == f"mit cpr-nummer er {CPR} tak", out


def test_substitute_cpr_day_plus_60_counts():
    assert is_cpr("6101901234") and redact("6101901234") == CPR


def test_ten_digits_that_are_no_date_still_go():
    assert redact("9913901234") == NUMBER


@pytest.mark.parametrize("text", [
    "+45 20 12 34 56", "0045 20123456", "20 12 34 56", "20123456", "+4520123456", "33 66 33 66",
    "2012 3456", "1234 5678 9012 3456", "1234-5678-9012-3456", "1234-12345678",
    "to nul en to tre fire fem seks",                         # a phone number said digit by digit
    "tyve tolv fireogtredive seksoghalvtreds",                 # ... and in pairs
])
def test_phone_card_and_account_numbers_are_redacted(text):
    assert redact(f"ring på {text} i dag") == f"ring på {NUMBER} i dag"


@pytest.mark.parametrize("text", [
    "Jeg har 3 børn", "klokken 14", "fra 1 til 5", "4", "[1]", "1.500 kr.", "Født 1990",
    "jeg har en søn og to døtre", "et pas koster 100 kr", "mellem 8 og 16",
    "fem og tyve minutter", "to tre gange", "den 1. januar 2025", "tolv fem og tyve",
    "postnummer 2300", "2300 København S", "10 20 30",
])
def test_ordinary_numbers_survive(text):
    assert redact(text) == text


def test_several_numbers_in_one_text():
    text = "CPR 311299-1234 og telefon 20304050, sag 12"
    assert redact(text) == f"CPR {CPR} og telefon {NUMBER}, sag 12"
    # two numbers run together: the CPR is still found, the rest removed as a number
    assert redact("0101901234 20304050") == f"{CPR} {NUMBER}"


def test_keep_numbers_removes_only_cpr():
    text = "Ring 33 66 33 66. Dit cpr 0101901234 skal ikke med."
    assert redact(text, keep_numbers=True) == f"Ring 33 66 33 66. Dit cpr {CPR} skal ikke med."


def test_empty_text():
    assert redact("") == ""


# -- caller ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("number,expected", [
    ("+45 20 12 34 56", "+4520123456"), ("004530123456", "+4530123456"), ("4591234567", "+4591234567"),
    ("20123456", "+4520123456"), ("31-12-34-56", "+4531123456"), ("+4542123456", "+4542123456"),
    ("53123456", "+4553123456"), ("61123456", "+4561123456"), ("71123456", "+4571123456"),
    ("81123456", "+4581123456"), ("93123456", "+4593123456"), ("29999999", "+4529999999"),
])
def test_danish_mobile_numbers(number, expected):
    assert danish_mobile(number) == expected


@pytest.mark.parametrize("number", [
    "33663366",         # Borgerservice, a landline
    "+4533663366", "70101155", "80808080", "90123456", "54123456", "43123456", "62123456",
    "+4620123456",      # Sweden
    "2012345", "201234567", "", "anonymous", "+45201234567",
])
def test_not_danish_mobile(number):
    assert danish_mobile(number) is None


def test_caller_hash_is_keyed_and_stable_across_spellings():
    salt = b"k" * 32
    h = caller_hash("+45 20 12 34 56", salt)
    assert len(h) == 16 and all(c in "0123456789abcdef" for c in h)
    assert h == caller_hash("20123456", salt) == caller_hash("004520123456", salt)
    assert h != caller_hash("20123456", b"other salt")
    assert h != caller_hash("20123457", salt)
    assert "20123456" not in h
    assert normalize_number("+46 70 123 45 67") == "+46701234567"
    assert normalize_number("0046701234567") == "+46701234567"
    assert caller_tail("+45 20 12 34 56") == "56" and caller_tail("") == ""


def test_record_salt_is_generated_once_private(tmp_path, monkeypatch):
    monkeypatch.delenv("VOICEBOT_RECORD_SALT", raising=False)
    salt = record_salt(tmp_path)
    path = tmp_path / "var" / "record-salt"
    assert len(salt) == 32 and path.read_bytes() == salt
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert record_salt(tmp_path) == salt
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_record_salt_from_environment_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICEBOT_RECORD_SALT", "from-env")
    assert record_salt(tmp_path) == b"from-env"
    assert not (tmp_path / "var").exists()
