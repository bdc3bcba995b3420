"""Safe XML: a bank file cannot expand entities or reach files and URLs."""

from __future__ import annotations

import pytest

from ledger.bankfiles import StatementError, UnsafeXmlError, parse_xml_safely, read_statement

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><x>&lol9;</x></Document>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Document [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><x>&xxe;</x></Document>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Document SYSTEM "http://127.0.0.1:9/evil.dtd">
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"/>
"""

PARAMETER_ENTITY_UTF16 = EXTERNAL_ENTITY.decode().replace('encoding="UTF-8"', "").encode("utf-16")

ATTACKS = {
    "billion laughs": BILLION_LAUGHS,
    "external entity file:///etc/passwd": EXTERNAL_ENTITY,
    "external DTD over the network": EXTERNAL_DTD,
    "external entity hidden in UTF-16": PARAMETER_ENTITY_UTF16,
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_declarations_are_refused_before_parsing(name: str) -> None:
    with pytest.raises(UnsafeXmlError, match="not allowed"):
        parse_xml_safely(ATTACKS[name])


@pytest.mark.parametrize("name", list(ATTACKS))
def test_statement_reader_refuses_attacks_with_a_statement_error(name: str) -> None:
    with pytest.raises(StatementError) as caught:
        read_statement(ATTACKS[name], source="evil.xml", fund_account_id="1")
    assert "not allowed" in str(caught.value)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd leaks into the message


def test_a_plain_document_still_parses() -> None:
    root = parse_xml_safely(b"<a><b>text</b></a>")
    assert root.findtext("b") == "text"


def test_undeclared_entity_reference_is_malformed_not_resolved() -> None:
    with pytest.raises(UnsafeXmlError, match="not well-formed"):
        parse_xml_safely(b"<a>&xxe;</a>")
