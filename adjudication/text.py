"""Which characters a text field of the reference files may not hold.

A name or code read at import travels on: into the database (which refuses
NUL), into payout files (XML cannot carry most control characters, and a
bank cannot pay a name it cannot read) and into reports. So it is refused
at the file, with the line and field, rather than at the far end of the
day. Refused: control characters (C0, DEL and C1, tab and line breaks
included), the Unicode line and paragraph separators, lone surrogates and
noncharacters. ledger/bankfiles/text.py holds the same rule for bank files
(the ledger and the engine do not import each other).
"""

from __future__ import annotations

import re

_UNFIT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"\\U{plane:04X}FFFE\\U{plane:04X}FFFF" for plane in range(17))
    + "]"
)


def unfit_character(text: str) -> str | None:
    """What is wrong with `text`, or None when it may be stored and written anywhere."""
    if text.isprintable():  # the common case, fast: every refused character is unprintable
        return None
    found = _UNFIT.search(text)
    if found is None:
        return None
    code, where = ord(found.group()), found.start() + 1
    return f"contains U+{code:04X} at character {where} (control characters are not allowed)"
