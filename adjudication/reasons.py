"""Reason codes: API for hospitals and pharmacies, append-only.

Claim-level rejections (R_*) are listed in the order they are checked;
line-level reasons (L_*) and warnings (W_*) follow. Never rename, renumber or
reuse one: clients program against them (docs/integrators.md).
"""

from __future__ import annotations

from typing import Final

R_INSTITUTION_NOT_ACTIVE: Final = "R_INSTITUTION_NOT_ACTIVE"
R_VISIT_TYPE_NOT_ALLOWED: Final = "R_VISIT_TYPE_NOT_ALLOWED"
R_CARD_INVALID: Final = "R_CARD_INVALID"
R_PIN_LOCKED: Final = "R_PIN_LOCKED"
R_PIN_INVALID: Final = "R_PIN_INVALID"
R_MEMBER_DECEASED: Final = "R_MEMBER_DECEASED"
R_MEMBER_SUSPENDED: Final = "R_MEMBER_SUSPENDED"
R_NON_COVERED_CAUSE: Final = "R_NON_COVERED_CAUSE"
R_ACCIDENT_UNAPPROVED: Final = "R_ACCIDENT_UNAPPROVED"
R_SPECIAL_DISEASE_NOT_APPROVED: Final = "R_SPECIAL_DISEASE_NOT_APPROVED"
R_NON_MEDICAL_GOODS: Final = "R_NON_MEDICAL_GOODS"
R_RX_REQUIRES_PRESCRIPTION: Final = "R_RX_REQUIRES_PRESCRIPTION"
R_OTC_AMOUNT_LIMIT: Final = "R_OTC_AMOUNT_LIMIT"
R_FREQUENT_PURCHASE: Final = "R_FREQUENT_PURCHASE"

L_NOT_IN_CATALOG: Final = "L_NOT_IN_CATALOG"
L_CLASS_C: Final = "L_CLASS_C"
L_RESTRICTED_USE: Final = "L_RESTRICTED_USE"
L_CHILD_ONLY: Final = "L_CHILD_ONLY"
L_INPATIENT_ONLY: Final = "L_INPATIENT_ONLY"
L_OTHER_SCHEME: Final = "L_OTHER_SCHEME"
L_DAYS_SUPPLY_EXCEEDED: Final = "L_DAYS_SUPPLY_EXCEEDED"
L_OVER_PRICE_CAP: Final = "L_OVER_PRICE_CAP"
L_ACCOUNT_ONLY_OUTPATIENT: Final = "L_ACCOUNT_ONLY_OUTPATIENT"

W_SPLIT_ADMISSION: Final = "W_SPLIT_ADMISSION"

# One line of meaning per code, for the README, `medswitch adjudicate` and
# anyone who asks the switch what a code means.
MEANING: Final[dict[str, str]] = {
    R_INSTITUTION_NOT_ACTIVE: "the institution is suspended or revoked (or unknown)",
    R_VISIT_TYPE_NOT_ALLOWED: "PHARMACY at a non-pharmacy, or another visit type at a pharmacy",
    R_CARD_INVALID: "no member holds that card, or the card is reported lost",
    R_PIN_LOCKED: "the card is locked after 5 consecutive wrong PINs",
    R_PIN_INVALID: "wrong PIN (counts toward the lock; a right PIN resets the count)",
    R_MEMBER_DECEASED: "the member is deceased",
    R_MEMBER_SUSPENDED: "the member's benefits are suspended (contribution arrears)",
    R_NON_COVERED_CAUSE: "injury cause not paid by basic medical insurance",
    R_ACCIDENT_UNAPPROVED: "accidental injury without an approved accident case id",
    R_SPECIAL_DISEASE_NOT_APPROVED: "primary diagnosis is not an approved special disease today",
    R_NON_MEDICAL_GOODS: "pharmacy claim containing non-medical goods",
    R_RX_REQUIRES_PRESCRIPTION: "prescription-only drug at a pharmacy without a prescription",
    R_OTC_AMOUNT_LIMIT: "OTC purchase without prescription above the per-purchase limit",
    R_FREQUENT_PURCHASE: "more pharmacy purchases on one day than the policy allows",
    L_NOT_IN_CATALOG: "item not in the catalog in force: full self-pay",
    L_CLASS_C: "class C (self-pay) item: full self-pay",
    L_RESTRICTED_USE: "restricted-use item without the hospital's approval: full self-pay",
    L_CHILD_ONLY: "children-only item for a member 18 or older: full self-pay",
    L_INPATIENT_ONLY: "inpatient-only item outside an inpatient stay: full self-pay",
    L_OTHER_SCHEME: "item paid by work-injury or maternity insurance: full self-pay",
    L_DAYS_SUPPLY_EXCEEDED: "drug supplied for more days than allowed: full self-pay",
    L_OVER_PRICE_CAP: "unit price above the price cap: the excess is self-pay",
    L_ACCOUNT_ONLY_OUTPATIENT: "outpatient use of an account-only item: the fund does not pay it",
    W_SPLIT_ADMISSION: "admitted within a few days of an earlier discharge (split admission?)",
}
