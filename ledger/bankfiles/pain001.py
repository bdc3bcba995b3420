"""ISO 20022 pain.001.001.03: the credit transfer file the fund's bank executes.

One message per business day with one payment information block: the
debtor is the fund's own bank account, each institution's payout is one
CdtTrfTxInf whose EndToEndId the bank reports back on its statement, which is
how reconciliation finds it. The creation time is a parameter so the same
inputs always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from ledger.bankfiles.amounts import fen_to_yuan_text
from ledger.bankfiles.safexml import schema, xml_child
from ledger.bankfiles.text import unfit_character

PAIN001 = "pain.001.001.03"
NAMESPACE = f"urn:iso:std:iso:20022:tech:xsd:{PAIN001}"
CURRENCY = "CNY"
# Field limits of the schema (Max35Text, Max140Text).
id_chars_max = 35
name_chars_max = 140


@dataclass(frozen=True, slots=True)
class DebtorAccount:
    """The fund's bank account that pays the institutions."""

    account_id: str  # an IBAN, or the bank's own account number
    owner_name: str
    agent_bic: str | None = None  # the account-holding bank, by BIC ...
    agent_id: str | None = None  # ... or by a national code (e.g. CNAPS)

    @property
    def is_iban(self) -> bool:
        text = self.account_id
        return (
            len(text) >= 5
            and text[:2].isalpha()
            and text[:2].isupper()
            and text[2:4].isdigit()
            and text[4:].isalnum()
        )


@dataclass(frozen=True, slots=True)
class CreditTransfer:
    end_to_end_id: str
    amount_fen: int
    creditor_name: str
    creditor_id: str  # the institution code; the bank maps it to the payee account
    remittance_info: str


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    return xml_child(parent, NAMESPACE, tag, text)


def _account(parent: etree._Element, tag: str, account: DebtorAccount) -> None:
    ident = _sub(_sub(parent, tag), "Id")
    if account.is_iban:
        _sub(ident, "IBAN", account.account_id)
    else:
        _sub(_sub(ident, "Othr"), "Id", account.account_id[:id_chars_max])


def _agent(parent: etree._Element, account: DebtorAccount) -> None:
    institution = _sub(_sub(parent, "DbtrAgt"), "FinInstnId")
    if account.agent_bic:
        _sub(institution, "BIC", account.agent_bic)
    elif account.agent_id:
        _sub(_sub(institution, "Othr"), "Id", account.agent_id[:id_chars_max])
    else:
        # The schema needs an agent; "NOTPROVIDED" is the ISO convention for
        # an agent the bank derives from the account.
        _sub(_sub(institution, "Othr"), "Id", "NOTPROVIDED")


def _check(
    created_at: datetime, debtor: DebtorAccount, transfers: Sequence[CreditTransfer]
) -> None:
    """ValueError naming the first input a payment file cannot carry."""
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    if not transfers:
        raise ValueError("a payment file needs at least one transfer")
    debtor_texts = {
        "account": debtor.account_id,
        "name": debtor.owner_name,
        "bank BIC": debtor.agent_bic or "",
        "bank code": debtor.agent_id or "",
    }
    for field, text in debtor_texts.items():
        problem = unfit_character(text)
        if problem is not None:
            raise ValueError(f"the fund's {field}: {problem}")
    for transfer in transfers:
        if transfer.amount_fen <= 0:
            raise ValueError(
                f"{transfer.end_to_end_id}: amount_fen {transfer.amount_fen} is not positive"
            )
        if len(transfer.end_to_end_id) > id_chars_max:
            raise ValueError(f"{transfer.end_to_end_id}: end-to-end id over {id_chars_max}")
        texts = {
            "end-to-end id": transfer.end_to_end_id,
            "creditor name": transfer.creditor_name,
            "creditor id": transfer.creditor_id,
            "remittance information": transfer.remittance_info,
        }
        for field, text in texts.items():
            problem = unfit_character(text)
            if problem is not None:
                raise ValueError(f"{transfer.end_to_end_id!r}: {field}: {problem}")


def build_pain001(
    *,
    message_id: str,
    created_at: datetime,
    debtor: DebtorAccount,
    transfers: Sequence[CreditTransfer],
) -> bytes:
    """The pain.001.001.03 document for `transfers`, as UTF-8 bytes.

    `created_at` must be timezone-aware (it becomes CreDtTm and, as a date,
    the requested execution date). Amounts must be positive: the fund never
    sends a negative transfer. The document is checked against the official
    schema before it is returned: a file the bank would refuse (a malformed
    BIC, say) is a ValueError here, before anything is posted.
    """
    _check(created_at, debtor, transfers)
    total_fen = sum(t.amount_fen for t in transfers)
    count = str(len(transfers))

    root = etree.Element(f"{{{NAMESPACE}}}Document", nsmap={None: NAMESPACE})
    initiation = _sub(root, "CstmrCdtTrfInitn")
    header = _sub(initiation, "GrpHdr")
    _sub(header, "MsgId", message_id[:id_chars_max])
    _sub(header, "CreDtTm", created_at.isoformat(timespec="seconds"))
    _sub(header, "NbOfTxs", count)
    _sub(header, "CtrlSum", fen_to_yuan_text(total_fen))
    _sub(_sub(header, "InitgPty"), "Nm", debtor.owner_name[:name_chars_max])

    info = _sub(initiation, "PmtInf")
    _sub(info, "PmtInfId", f"{message_id}-1"[:id_chars_max])
    _sub(info, "PmtMtd", "TRF")
    _sub(info, "BtchBookg", "false")  # one statement entry per payout, to reconcile
    _sub(info, "NbOfTxs", count)
    _sub(info, "CtrlSum", fen_to_yuan_text(total_fen))
    _sub(info, "ReqdExctnDt", created_at.date().isoformat())
    _sub(_sub(info, "Dbtr"), "Nm", debtor.owner_name[:name_chars_max])
    _account(info, "DbtrAcct", debtor)
    _agent(info, debtor)
    _sub(info, "ChrgBr", "SLEV")
    for transfer in transfers:
        tx = _sub(info, "CdtTrfTxInf")
        _sub(_sub(tx, "PmtId"), "EndToEndId", transfer.end_to_end_id)
        amount = _sub(_sub(tx, "Amt"), "InstdAmt", fen_to_yuan_text(transfer.amount_fen))
        amount.set("Ccy", CURRENCY)
        creditor = _sub(tx, "Cdtr")
        _sub(creditor, "Nm", transfer.creditor_name[:name_chars_max] or transfer.creditor_id)
        other = _sub(_sub(_sub(creditor, "Id"), "OrgId"), "Othr")
        _sub(other, "Id", transfer.creditor_id[:id_chars_max])
        _sub(_sub(tx, "RmtInf"), "Ustrd", transfer.remittance_info[:name_chars_max])
    validator = schema(PAIN001)
    if not validator.validate(root):
        raise ValueError(f"not a valid {PAIN001} file: {validator.error_log[0].message}")
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
