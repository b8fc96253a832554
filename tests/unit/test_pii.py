"""PII masking on realistic text: what is masked, and what must be left alone."""
import pytest

from ruvllm import pii


def test_masks_each_kind_in_a_support_ticket():
    text = ("Hi, I'm Dana (dana.k+ops@example.co.uk, +44 20 7946 0958). Card 4111 1111 1111 1111 "
            "was charged twice; refund to DE89 3704 0044 0532 0130 00 please. "
            "Login came from 203.0.113.42 and 2001:db8::8a2e:370:7334.")
    masked, counts = pii.mask(text)
    assert masked == ("Hi, I'm Dana ([EMAIL], [PHONE]). Card [CARD] was charged twice; refund to "
                      "[IBAN] please. Login came from [IP] and [IP].")
    assert counts == {"email": 1, "phone": 1, "card": 1, "iban": 1, "ip": 2}


def test_leaves_lookalikes_alone():
    text = ("Order 4111 1111 1111 1112 shipped; version 10.2.3 on port 5432; "
            "IBAN-like GB00 WEST 1234 5698 7654 32; at 12:30 on 2026-11-25; 999.1.1.1")
    masked, counts = pii.mask(text)
    assert "4111 1111 1111 1112" in masked   # fails Luhn
    assert "GB00 WEST 1234 5698 7654 32" in masked   # wrong check digits
    assert "10.2.3" in masked and "999.1.1.1" in masked and "12:30" in masked
    assert "card" not in counts and "iban" not in counts and "ip" not in counts


def test_kinds_can_be_chosen():
    masked, counts = pii.mask("mail a@b.io from 10.0.0.1", kinds=("ip",))
    assert masked == "mail a@b.io from [IP]" and counts == {"ip": 1}
    with pytest.raises(ValueError):
        pii.mask("x", kinds=("ssn",))


@pytest.mark.parametrize("number, ok", [
    ("4111111111111111", True), ("5500005555555559", True), ("378282246310005", True),
    ("4111111111111112", False), ("1234567812345678", False),
])
def test_luhn(number, ok):
    assert pii.luhn_ok(number) is ok


def test_iban_check_digits():
    assert pii.iban_ok("GB82 WEST 1234 5698 7654 32")
    assert pii.iban_ok("DE89370400440532013000")
    assert not pii.iban_ok("GB83 WEST 1234 5698 7654 32")


@pytest.mark.parametrize("phone", ["+1 415 555 2671", "(020) 7946 0958", "020 7946 0958",
                                   "415-555-2671", "+49 (30) 901820", "+33 1 42 68 53 00"])
def test_phone_shapes(phone):
    assert pii.mask(f"call {phone} today")[0] == "call [PHONE] today"
