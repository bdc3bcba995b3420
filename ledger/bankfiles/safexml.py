"""Parsing bank XML without letting the file reach outside itself.

A statement arrives from outside the switch. An XML file can declare entities
that expand a few kilobytes into gigabytes ("billion laughs") or pull in local
files and URLs (external entities). Bank messages never need a DTD, so any
DOCTYPE or ENTITY declaration is refused outright, and the parser itself is
configured to resolve nothing even if one slipped through.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lxml import etree

from ledger.limits import statement_bytes_max

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# A declaration anywhere in the prolog; checked on the raw bytes before lxml
# sees them (UTF-16 files are decoded first so the check cannot be dodged).
_DECLARATION_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class UnsafeXmlError(ValueError):
    """The XML is malformed or tries something a bank file has no need for."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _as_utf8_for_scan(data: bytes) -> bytes:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16").encode("utf-8")
    return data


def parse_xml_safely(data: bytes) -> etree._Element:
    """The root element of `data`; raises UnsafeXmlError on any DTD or bad XML."""
    if len(data) > statement_bytes_max:
        raise UnsafeXmlError(f"file is {len(data):,} bytes, more than {statement_bytes_max:,}")
    try:
        scan = _as_utf8_for_scan(data)
    except UnicodeDecodeError as exc:
        raise UnsafeXmlError(f"not decodable text: {exc}") from None
    found = _DECLARATION_RE.search(scan)
    if found is not None:
        line = scan.count(b"\n", 0, found.start()) + 1
        kind = found.group(1).decode().upper()
        raise UnsafeXmlError(
            f"line {line}: a {kind} declaration is not allowed in a bank file "
            "(entity expansion and external entities are refused)"
        )
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise UnsafeXmlError(f"line {exc.lineno}: not well-formed XML: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXmlError("a DOCTYPE is not allowed in a bank file")
    return root


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    """The committed official schema `name` (e.g. "pain.001.001.03"), compiled once."""
    path = SCHEMA_DIR / f"{name}.xsd"
    return etree.XMLSchema(etree.parse(str(path), parser=_parser()))


def xml_child(
    parent: etree._Element, namespace: str, tag: str, text: str | None = None
) -> etree._Element:
    """A new child `tag` of `parent` in `namespace`, with `text` when given."""
    element = etree.SubElement(parent, f"{{{namespace}}}{tag}")
    if text is not None:
        element.text = text
    return element
