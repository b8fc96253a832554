"""PII masking for text ruvllm stores (memory writeback, witness text, sessions).

Kinds: email, phone, card (payment card numbers that pass the Luhn check), iban (ISO 13616
check digits, mod 97), ip (IPv4 and IPv6). Each match is replaced by a typed placeholder such as
``[EMAIL]``; what the caller gets back from ruvllm_query is never altered, only what is stored.

Validation keeps false positives down: a 16-digit order number that fails Luhn is not a card,
and an IBAN-shaped string with wrong check digits is not an IBAN. Cards and IBANs are matched
before phones, so their digits are not taken for a phone number.
"""
import ipaddress
import re

from .sqlglue import setting

KINDS = ("email", "card", "iban", "ip", "phone")

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])")
# A phone number must say it is one: a +country code, an (area code), a national trunk 0, or
# the North American 3-3-4 shape. Bare digit groups (amounts, ids, dates) are left alone.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}"
    r"|0\d{2,4}[ .-]\d{3,4}[ .-]?\d{3,4}"
    r"|\d{3}-\d{3}-\d{4}"
    r")(?!\w)")


def luhn_ok(digits):
    total, double = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        double = not double
    return total % 10 == 0


def iban_ok(text):
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _card(m):
    digits = re.sub(r"\D", "", m.group(0))
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _ip(m):
    try:
        ipaddress.ip_address(m.group(0))
        return True
    except ValueError:
        return False


def _phone(m):
    digits = re.sub(r"\D", "", m.group(0))
    return 7 <= len(digits) <= 15


_RULES = (
    ("email", _EMAIL, None),
    ("card", _CARD, _card),
    ("iban", _IBAN, lambda m: iban_ok(m.group(0))),
    ("ip", _IPV4, _ip),
    ("ip", _IPV6, _ip),
    ("phone", _PHONE, _phone),
)


def mask(text, kinds=KINDS):
    """(masked text, {kind: count}). kinds: which kinds to mask."""
    if not text:
        return text, {}
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds: {sorted(unknown)}")
    counts = {}
    for kind, pattern, valid in _RULES:
        if kind not in kinds:
            continue

        def replace(m, kind=kind, valid=valid):
            if valid is not None and not valid(m):
                return m.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return f"[{kind.upper()}]"
        text = pattern.sub(replace, text)
    return text, counts


def kinds_from_setting(value):
    """The ruvllm.pii_mask setting as a tuple of kinds ('' or 'none': nothing is masked)."""
    if value is None:
        return KINDS
    kinds = tuple(k.strip().lower() for k in value.split(",") if k.strip())
    if kinds in ((), ("none",)):
        return ()
    unknown = set(kinds) - set(KINDS)
    if unknown:
        from . import errors
        raise errors.invalid(f"ruvllm.pii_mask names unknown kinds: {', '.join(sorted(unknown))}",
                             hint="Kinds: " + ", ".join(KINDS))
    return kinds


def masker(kinds):
    """A function text -> masked text for these kinds (identity when there are none)."""
    if not kinds:
        return lambda text: text
    return lambda text: mask(text, kinds)[0] if isinstance(text, str) else text


def storage_mask(plpy):
    """The masker for what a request stores now, per ruvllm.pii_mask."""
    return masker(kinds_from_setting(setting(plpy, "ruvllm.pii_mask", "none")))
