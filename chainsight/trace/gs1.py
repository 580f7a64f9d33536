"""GS1 identifiers: check digits, and SSCC/GTIN as the EPC URNs EPCIS uses.

An EPC URN splits the GS1 key at the end of the company prefix, whose length (6-12 digits) the
key itself does not tell: it is a setting (`company_prefix_digits`, 7 by default).
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d+")
_SSCC_URN = re.compile(r"urn:epc:id:sscc:(\d{6,12})\.(\d+)")


def check_digit(body: str) -> str:
    """The GS1 mod-10 check digit of the digits before it."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str(-total % 10)


def valid_key(key: str, length: int) -> bool:
    """An all-digit GS1 key of `length` digits whose last digit checks."""
    return (len(key) == length and _DIGITS.fullmatch(key) is not None
            and check_digit(key[:-1]) == key[-1])


def sscc_urn(sscc: str, prefix_digits: int = 7) -> str:
    """`urn:epc:id:sscc:{company prefix}.{extension digit + serial reference}`."""
    return f"urn:epc:id:sscc:{sscc[1:1 + prefix_digits]}.{sscc[0]}{sscc[1 + prefix_digits:17]}"


def sscc_of_urn(urn: str) -> str | None:
    """The 18-digit SSCC an SSCC URN stands for, None when `urn` is not one."""
    match = _SSCC_URN.fullmatch(urn)
    if match is None or len(match[1]) + len(match[2]) != 17:
        return None
    body = match[2][0] + match[1] + match[2][1:]
    return body + check_digit(body)


def lgtin_class(gtin: str, lot: str | None, prefix_digits: int = 7) -> str:
    """The EPC class of a trade item (of one lot when known): LGTIN or SGTIN pattern."""
    prefix, item = gtin[1:1 + prefix_digits], gtin[0] + gtin[1 + prefix_digits:13]
    if lot:
        return f"urn:epc:class:lgtin:{prefix}.{item}.{lot}"
    return f"urn:epc:idpat:sgtin:{prefix}.{item}.*"
