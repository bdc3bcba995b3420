from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VisitType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VISIT_TYPE_UNSPECIFIED: _ClassVar[VisitType]
    VISIT_TYPE_OUTPATIENT: _ClassVar[VisitType]
    VISIT_TYPE_SPECIAL_DISEASE: _ClassVar[VisitType]
    VISIT_TYPE_INPATIENT: _ClassVar[VisitType]
    VISIT_TYPE_PHARMACY: _ClassVar[VisitType]

class InjuryCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INJURY_CAUSE_NONE: _ClassVar[InjuryCause]
    INJURY_CAUSE_ACCIDENT: _ClassVar[InjuryCause]
    INJURY_CAUSE_FIGHT: _ClassVar[InjuryCause]
    INJURY_CAUSE_DRUNK: _ClassVar[InjuryCause]
    INJURY_CAUSE_CRIME: _ClassVar[InjuryCause]
    INJURY_CAUSE_SELF_HARM: _ClassVar[InjuryCause]
    INJURY_CAUSE_TRAFFIC: _ClassVar[InjuryCause]
    INJURY_CAUSE_WORK_INJURY: _ClassVar[InjuryCause]
    INJURY_CAUSE_MATERNITY: _ClassVar[InjuryCause]

class SettlementStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTLEMENT_STATUS_UNSPECIFIED: _ClassVar[SettlementStatus]
    SETTLEMENT_STATUS_PREVIEW: _ClassVar[SettlementStatus]
    SETTLEMENT_STATUS_SETTLED: _ClassVar[SettlementStatus]
    SETTLEMENT_STATUS_REJECTED: _ClassVar[SettlementStatus]
    SETTLEMENT_STATUS_CANCELLED: _ClassVar[SettlementStatus]

class MemberCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_CATEGORY_UNSPECIFIED: _ClassVar[MemberCategory]
    MEMBER_CATEGORY_EMPLOYEE: _ClassVar[MemberCategory]
    MEMBER_CATEGORY_RETIREE: _ClassVar[MemberCategory]
    MEMBER_CATEGORY_RESIDENT: _ClassVar[MemberCategory]
    MEMBER_CATEGORY_RETIRED_CADRE: _ClassVar[MemberCategory]

class MemberStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_STATUS_UNSPECIFIED: _ClassVar[MemberStatus]
    MEMBER_STATUS_ACTIVE: _ClassVar[MemberStatus]
    MEMBER_STATUS_SUSPENDED: _ClassVar[MemberStatus]
    MEMBER_STATUS_DECEASED: _ClassVar[MemberStatus]

class EntryKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENTRY_KIND_UNSPECIFIED: _ClassVar[EntryKind]
    SETTLEMENT: _ClassVar[EntryKind]
    CANCELLATION: _ClassVar[EntryKind]
    CREDIT: _ClassVar[EntryKind]

class EncounterStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCOUNTER_STATUS_UNSPECIFIED: _ClassVar[EncounterStatus]
    ENCOUNTER_STATUS_ADMITTED: _ClassVar[EncounterStatus]
    ENCOUNTER_STATUS_DISCHARGED: _ClassVar[EncounterStatus]
    ENCOUNTER_STATUS_SETTLED: _ClassVar[EncounterStatus]
    ENCOUNTER_STATUS_CANCELLED: _ClassVar[EncounterStatus]

class CatalogKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATALOG_KIND_UNSPECIFIED: _ClassVar[CatalogKind]
    DRUG: _ClassVar[CatalogKind]
    TREATMENT: _ClassVar[CatalogKind]
    FACILITY: _ClassVar[CatalogKind]
    MATERIAL: _ClassVar[CatalogKind]
    GOODS: _ClassVar[CatalogKind]
VISIT_TYPE_UNSPECIFIED: VisitType
VISIT_TYPE_OUTPATIENT: VisitType
VISIT_TYPE_SPECIAL_DISEASE: VisitType
VISIT_TYPE_INPATIENT: VisitType
VISIT_TYPE_PHARMACY: VisitType
INJURY_CAUSE_NONE: InjuryCause
INJURY_CAUSE_ACCIDENT: InjuryCause
INJURY_CAUSE_FIGHT: InjuryCause
INJURY_CAUSE_DRUNK: InjuryCause
INJURY_CAUSE_CRIME: InjuryCause
INJURY_CAUSE_SELF_HARM: InjuryCause
INJURY_CAUSE_TRAFFIC: InjuryCause
INJURY_CAUSE_WORK_INJURY: InjuryCause
INJURY_CAUSE_MATERNITY: InjuryCause
SETTLEMENT_STATUS_UNSPECIFIED: SettlementStatus
SETTLEMENT_STATUS_PREVIEW: SettlementStatus
SETTLEMENT_STATUS_SETTLED: SettlementStatus
SETTLEMENT_STATUS_REJECTED: SettlementStatus
SETTLEMENT_STATUS_CANCELLED: SettlementStatus
MEMBER_CATEGORY_UNSPECIFIED: MemberCategory
MEMBER_CATEGORY_EMPLOYEE: MemberCategory
MEMBER_CATEGORY_RETIREE: MemberCategory
MEMBER_CATEGORY_RESIDENT: MemberCategory
MEMBER_CATEGORY_RETIRED_CADRE: MemberCategory
MEMBER_STATUS_UNSPECIFIED: MemberStatus
MEMBER_STATUS_ACTIVE: MemberStatus
MEMBER_STATUS_SUSPENDED: MemberStatus
MEMBER_STATUS_DECEASED: MemberStatus
ENTRY_KIND_UNSPECIFIED: EntryKind
SETTLEMENT: EntryKind
CANCELLATION: EntryKind
CREDIT: EntryKind
ENCOUNTER_STATUS_UNSPECIFIED: EncounterStatus
ENCOUNTER_STATUS_ADMITTED: EncounterStatus
ENCOUNTER_STATUS_DISCHARGED: EncounterStatus
ENCOUNTER_STATUS_SETTLED: EncounterStatus
ENCOUNTER_STATUS_CANCELLED: EncounterStatus
CATALOG_KIND_UNSPECIFIED: CatalogKind
DRUG: CatalogKind
TREATMENT: CatalogKind
FACILITY: CatalogKind
MATERIAL: CatalogKind
GOODS: CatalogKind

class ClaimLine(_message.Message):
    __slots__ = ("line_no", "item_code", "quantity", "unit_price_fen", "amount_fen", "days_supply", "approved", "discharge_medication")
    LINE_NO_FIELD_NUMBER: _ClassVar[int]
    ITEM_CODE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FEN_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    DAYS_SUPPLY_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    DISCHARGE_MEDICATION_FIELD_NUMBER: _ClassVar[int]
    line_no: int
    item_code: str
    quantity: int
    unit_price_fen: int
    amount_fen: int
    days_supply: int
    approved: bool
    discharge_medication: bool
    def __init__(self, line_no: _Optional[int] = ..., item_code: _Optional[str] = ..., quantity: _Optional[int] = ..., unit_price_fen: _Optional[int] = ..., amount_fen: _Optional[int] = ..., days_supply: _Optional[int] = ..., approved: _Optional[bool] = ..., discharge_medication: _Optional[bool] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "card_no", "pin", "visit_type", "service_date", "admission_date", "discharge_date", "diagnoses", "injury_cause", "accident_case_id", "prescription_ref", "skip_individual_account", "lines")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    VISIT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_DATE_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_DATE_FIELD_NUMBER: _ClassVar[int]
    DISCHARGE_DATE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSES_FIELD_NUMBER: _ClassVar[int]
    INJURY_CAUSE_FIELD_NUMBER: _ClassVar[int]
    ACCIDENT_CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PRESCRIPTION_REF_FIELD_NUMBER: _ClassVar[int]
    SKIP_INDIVIDUAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    card_no: str
    pin: str
    visit_type: VisitType
    service_date: str
    admission_date: str
    discharge_date: str
    diagnoses: _containers.RepeatedScalarFieldContainer[str]
    injury_cause: InjuryCause
    accident_case_id: str
    prescription_ref: str
    skip_individual_account: bool
    lines: _containers.RepeatedCompositeFieldContainer[ClaimLine]
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., card_no: _Optional[str] = ..., pin: _Optional[str] = ..., visit_type: _Optional[_Union[VisitType, str]] = ..., service_date: _Optional[str] = ..., admission_date: _Optional[str] = ..., discharge_date: _Optional[str] = ..., diagnoses: _Optional[_Iterable[str]] = ..., injury_cause: _Optional[_Union[InjuryCause, str]] = ..., accident_case_id: _Optional[str] = ..., prescription_ref: _Optional[str] = ..., skip_individual_account: _Optional[bool] = ..., lines: _Optional[_Iterable[_Union[ClaimLine, _Mapping]]] = ...) -> None: ...

class Split(_message.Message):
    __slots__ = ("total_fen", "full_selfpay_fen", "overlimit_selfpay_fen", "preselfpay_fen", "in_scope_fen", "deductible_fen", "pooled_fund_fen", "serious_illness_fen", "institution_waiver_fen", "individual_account_fen", "patient_cash_fen")
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    FULL_SELFPAY_FEN_FIELD_NUMBER: _ClassVar[int]
    OVERLIMIT_SELFPAY_FEN_FIELD_NUMBER: _ClassVar[int]
    PRESELFPAY_FEN_FIELD_NUMBER: _ClassVar[int]
    IN_SCOPE_FEN_FIELD_NUMBER: _ClassVar[int]
    DEDUCTIBLE_FEN_FIELD_NUMBER: _ClassVar[int]
    POOLED_FUND_FEN_FIELD_NUMBER: _ClassVar[int]
    SERIOUS_ILLNESS_FEN_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_WAIVER_FEN_FIELD_NUMBER: _ClassVar[int]
    INDIVIDUAL_ACCOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    PATIENT_CASH_FEN_FIELD_NUMBER: _ClassVar[int]
    total_fen: int
    full_selfpay_fen: int
    overlimit_selfpay_fen: int
    preselfpay_fen: int
    in_scope_fen: int
    deductible_fen: int
    pooled_fund_fen: int
    serious_illness_fen: int
    institution_waiver_fen: int
    individual_account_fen: int
    patient_cash_fen: int
    def __init__(self, total_fen: _Optional[int] = ..., full_selfpay_fen: _Optional[int] = ..., overlimit_selfpay_fen: _Optional[int] = ..., preselfpay_fen: _Optional[int] = ..., in_scope_fen: _Optional[int] = ..., deductible_fen: _Optional[int] = ..., pooled_fund_fen: _Optional[int] = ..., serious_illness_fen: _Optional[int] = ..., institution_waiver_fen: _Optional[int] = ..., individual_account_fen: _Optional[int] = ..., patient_cash_fen: _Optional[int] = ...) -> None: ...

class LineResult(_message.Message):
    __slots__ = ("line_no", "item_class", "full_selfpay_fen", "overlimit_selfpay_fen", "preselfpay_fen", "in_scope_fen", "reasons")
    LINE_NO_FIELD_NUMBER: _ClassVar[int]
    ITEM_CLASS_FIELD_NUMBER: _ClassVar[int]
    FULL_SELFPAY_FEN_FIELD_NUMBER: _ClassVar[int]
    OVERLIMIT_SELFPAY_FEN_FIELD_NUMBER: _ClassVar[int]
    PRESELFPAY_FEN_FIELD_NUMBER: _ClassVar[int]
    IN_SCOPE_FEN_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    line_no: int
    item_class: str
    full_selfpay_fen: int
    overlimit_selfpay_fen: int
    preselfpay_fen: int
    in_scope_fen: int
    reasons: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, line_no: _Optional[int] = ..., item_class: _Optional[str] = ..., full_selfpay_fen: _Optional[int] = ..., overlimit_selfpay_fen: _Optional[int] = ..., preselfpay_fen: _Optional[int] = ..., in_scope_fen: _Optional[int] = ..., reasons: _Optional[_Iterable[str]] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ("settlement_id", "request_id", "status", "business_date", "member_id", "institution_code", "reasons", "warnings", "split", "lines", "balance_after_fen")
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_DATE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FEN_FIELD_NUMBER: _ClassVar[int]
    settlement_id: str
    request_id: str
    status: SettlementStatus
    business_date: str
    member_id: str
    institution_code: str
    reasons: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    split: Split
    lines: _containers.RepeatedCompositeFieldContainer[LineResult]
    balance_after_fen: int
    def __init__(self, settlement_id: _Optional[str] = ..., request_id: _Optional[str] = ..., status: _Optional[_Union[SettlementStatus, str]] = ..., business_date: _Optional[str] = ..., member_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., reasons: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., split: _Optional[_Union[Split, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[LineResult, _Mapping]]] = ..., balance_after_fen: _Optional[int] = ...) -> None: ...

class CancelSettlementRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "settlement_id", "original_request_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    settlement_id: str
    original_request_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., settlement_id: _Optional[str] = ..., original_request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelSettlementResponse(_message.Message):
    __slots__ = ("settlement_id", "status", "reversal_id", "balance_after_fen")
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REVERSAL_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FEN_FIELD_NUMBER: _ClassVar[int]
    settlement_id: str
    status: SettlementStatus
    reversal_id: str
    balance_after_fen: int
    def __init__(self, settlement_id: _Optional[str] = ..., status: _Optional[_Union[SettlementStatus, str]] = ..., reversal_id: _Optional[str] = ..., balance_after_fen: _Optional[int] = ...) -> None: ...

class GetSettlementRequest(_message.Message):
    __slots__ = ("institution_code", "settlement_id", "request_id")
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    institution_code: str
    settlement_id: str
    request_id: str
    def __init__(self, institution_code: _Optional[str] = ..., settlement_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetMemberRequest(_message.Message):
    __slots__ = ("institution_code", "card_no", "pin")
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    institution_code: str
    card_no: str
    pin: str
    def __init__(self, institution_code: _Optional[str] = ..., card_no: _Optional[str] = ..., pin: _Optional[str] = ...) -> None: ...

class ApprovedDisease(_message.Message):
    __slots__ = ("code", "valid_from", "valid_to")
    CODE_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_FIELD_NUMBER: _ClassVar[int]
    code: str
    valid_from: str
    valid_to: str
    def __init__(self, code: _Optional[str] = ..., valid_from: _Optional[str] = ..., valid_to: _Optional[str] = ...) -> None: ...

class Benefits(_message.Message):
    __slots__ = ("benefit_year", "policy_version", "outpatient_deductible_used_fen", "outpatient_pooled_fen", "basic_pooled_fen", "inpatient_above_deductible_fen", "new_admissions", "serious_illness_base_fen", "serious_illness_paid_fen", "outpatient_deductible_left_fen", "outpatient_pooled_left_fen", "outpatient_pooled_unlimited", "inpatient_deductible_fen", "inpatient_deductible_level", "basic_pooled_left_fen", "basic_pooled_unlimited", "serious_illness_left_fen")
    BENEFIT_YEAR_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPATIENT_DEDUCTIBLE_USED_FEN_FIELD_NUMBER: _ClassVar[int]
    OUTPATIENT_POOLED_FEN_FIELD_NUMBER: _ClassVar[int]
    BASIC_POOLED_FEN_FIELD_NUMBER: _ClassVar[int]
    INPATIENT_ABOVE_DEDUCTIBLE_FEN_FIELD_NUMBER: _ClassVar[int]
    NEW_ADMISSIONS_FIELD_NUMBER: _ClassVar[int]
    SERIOUS_ILLNESS_BASE_FEN_FIELD_NUMBER: _ClassVar[int]
    SERIOUS_ILLNESS_PAID_FEN_FIELD_NUMBER: _ClassVar[int]
    OUTPATIENT_DEDUCTIBLE_LEFT_FEN_FIELD_NUMBER: _ClassVar[int]
    OUTPATIENT_POOLED_LEFT_FEN_FIELD_NUMBER: _ClassVar[int]
    OUTPATIENT_POOLED_UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    INPATIENT_DEDUCTIBLE_FEN_FIELD_NUMBER: _ClassVar[int]
    INPATIENT_DEDUCTIBLE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    BASIC_POOLED_LEFT_FEN_FIELD_NUMBER: _ClassVar[int]
    BASIC_POOLED_UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    SERIOUS_ILLNESS_LEFT_FEN_FIELD_NUMBER: _ClassVar[int]
    benefit_year: int
    policy_version: str
    outpatient_deductible_used_fen: int
    outpatient_pooled_fen: int
    basic_pooled_fen: int
    inpatient_above_deductible_fen: int
    new_admissions: int
    serious_illness_base_fen: int
    serious_illness_paid_fen: int
    outpatient_deductible_left_fen: int
    outpatient_pooled_left_fen: int
    outpatient_pooled_unlimited: bool
    inpatient_deductible_fen: int
    inpatient_deductible_level: str
    basic_pooled_left_fen: int
    basic_pooled_unlimited: bool
    serious_illness_left_fen: int
    def __init__(self, benefit_year: _Optional[int] = ..., policy_version: _Optional[str] = ..., outpatient_deductible_used_fen: _Optional[int] = ..., outpatient_pooled_fen: _Optional[int] = ..., basic_pooled_fen: _Optional[int] = ..., inpatient_above_deductible_fen: _Optional[int] = ..., new_admissions: _Optional[int] = ..., serious_illness_base_fen: _Optional[int] = ..., serious_illness_paid_fen: _Optional[int] = ..., outpatient_deductible_left_fen: _Optional[int] = ..., outpatient_pooled_left_fen: _Optional[int] = ..., outpatient_pooled_unlimited: _Optional[bool] = ..., inpatient_deductible_fen: _Optional[int] = ..., inpatient_deductible_level: _Optional[str] = ..., basic_pooled_left_fen: _Optional[int] = ..., basic_pooled_unlimited: _Optional[bool] = ..., serious_illness_left_fen: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "name_masked", "category", "status", "region_code", "balance_fen", "special_diseases", "benefits", "open_encounter")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_MASKED_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REGION_CODE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    SPECIAL_DISEASES_FIELD_NUMBER: _ClassVar[int]
    BENEFITS_FIELD_NUMBER: _ClassVar[int]
    OPEN_ENCOUNTER_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    name_masked: str
    category: MemberCategory
    status: MemberStatus
    region_code: str
    balance_fen: int
    special_diseases: _containers.RepeatedCompositeFieldContainer[ApprovedDisease]
    benefits: Benefits
    open_encounter: Encounter
    def __init__(self, member_id: _Optional[str] = ..., name_masked: _Optional[str] = ..., category: _Optional[_Union[MemberCategory, str]] = ..., status: _Optional[_Union[MemberStatus, str]] = ..., region_code: _Optional[str] = ..., balance_fen: _Optional[int] = ..., special_diseases: _Optional[_Iterable[_Union[ApprovedDisease, _Mapping]]] = ..., benefits: _Optional[_Union[Benefits, _Mapping]] = ..., open_encounter: _Optional[_Union[Encounter, _Mapping]] = ...) -> None: ...

class ListAccountActivityRequest(_message.Message):
    __slots__ = ("card_no", "pin", "from_date", "to_date", "institution_code")
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    card_no: str
    pin: str
    from_date: str
    to_date: str
    institution_code: str
    def __init__(self, card_no: _Optional[str] = ..., pin: _Optional[str] = ..., from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., institution_code: _Optional[str] = ...) -> None: ...

class AccountEntry(_message.Message):
    __slots__ = ("posted_at", "business_date", "institution_code", "settlement_id", "kind", "amount_fen", "balance_after_fen")
    POSTED_AT_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_DATE_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FEN_FIELD_NUMBER: _ClassVar[int]
    posted_at: str
    business_date: str
    institution_code: str
    settlement_id: str
    kind: EntryKind
    amount_fen: int
    balance_after_fen: int
    def __init__(self, posted_at: _Optional[str] = ..., business_date: _Optional[str] = ..., institution_code: _Optional[str] = ..., settlement_id: _Optional[str] = ..., kind: _Optional[_Union[EntryKind, str]] = ..., amount_fen: _Optional[int] = ..., balance_after_fen: _Optional[int] = ...) -> None: ...

class ListAccountActivityResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AccountEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AccountEntry, _Mapping]]] = ...) -> None: ...

class RegisterAdmissionRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "card_no", "pin", "admission_date", "department", "diagnoses", "injury_cause", "accident_case_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_DATE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSES_FIELD_NUMBER: _ClassVar[int]
    INJURY_CAUSE_FIELD_NUMBER: _ClassVar[int]
    ACCIDENT_CASE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    card_no: str
    pin: str
    admission_date: str
    department: str
    diagnoses: _containers.RepeatedScalarFieldContainer[str]
    injury_cause: InjuryCause
    accident_case_id: str
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., card_no: _Optional[str] = ..., pin: _Optional[str] = ..., admission_date: _Optional[str] = ..., department: _Optional[str] = ..., diagnoses: _Optional[_Iterable[str]] = ..., injury_cause: _Optional[_Union[InjuryCause, str]] = ..., accident_case_id: _Optional[str] = ...) -> None: ...

class Encounter(_message.Message):
    __slots__ = ("encounter_id", "request_id", "institution_code", "member_id", "status", "admission_date", "department", "admission_diagnoses", "injury_cause", "accident_case_id", "discharge_date", "discharge_diagnoses", "line_count", "total_fen", "settlement_id")
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_DATE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_DIAGNOSES_FIELD_NUMBER: _ClassVar[int]
    INJURY_CAUSE_FIELD_NUMBER: _ClassVar[int]
    ACCIDENT_CASE_ID_FIELD_NUMBER: _ClassVar[int]
    DISCHARGE_DATE_FIELD_NUMBER: _ClassVar[int]
    DISCHARGE_DIAGNOSES_FIELD_NUMBER: _ClassVar[int]
    LINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    encounter_id: str
    request_id: str
    institution_code: str
    member_id: str
    status: EncounterStatus
    admission_date: str
    department: str
    admission_diagnoses: _containers.RepeatedScalarFieldContainer[str]
    injury_cause: InjuryCause
    accident_case_id: str
    discharge_date: str
    discharge_diagnoses: _containers.RepeatedScalarFieldContainer[str]
    line_count: int
    total_fen: int
    settlement_id: str
    def __init__(self, encounter_id: _Optional[str] = ..., request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., member_id: _Optional[str] = ..., status: _Optional[_Union[EncounterStatus, str]] = ..., admission_date: _Optional[str] = ..., department: _Optional[str] = ..., admission_diagnoses: _Optional[_Iterable[str]] = ..., injury_cause: _Optional[_Union[InjuryCause, str]] = ..., accident_case_id: _Optional[str] = ..., discharge_date: _Optional[str] = ..., discharge_diagnoses: _Optional[_Iterable[str]] = ..., line_count: _Optional[int] = ..., total_fen: _Optional[int] = ..., settlement_id: _Optional[str] = ...) -> None: ...

class CancelAdmissionRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "encounter_id", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    encounter_id: str
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., encounter_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class UploadFeeDetailsRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "encounter_id", "lines")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    encounter_id: str
    lines: _containers.RepeatedCompositeFieldContainer[ClaimLine]
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., encounter_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[ClaimLine, _Mapping]]] = ...) -> None: ...

class UploadFeeDetailsResponse(_message.Message):
    __slots__ = ("encounter_id", "request_id", "lines", "line_count", "total_fen")
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    LINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    encounter_id: str
    request_id: str
    lines: _containers.RepeatedCompositeFieldContainer[LineResult]
    line_count: int
    total_fen: int
    def __init__(self, encounter_id: _Optional[str] = ..., request_id: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LineResult, _Mapping]]] = ..., line_count: _Optional[int] = ..., total_fen: _Optional[int] = ...) -> None: ...

class VoidFeeDetailsRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "encounter_id", "line_nos", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_NOS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    encounter_id: str
    line_nos: _containers.RepeatedScalarFieldContainer[int]
    reason: str
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., encounter_id: _Optional[str] = ..., line_nos: _Optional[_Iterable[int]] = ..., reason: _Optional[str] = ...) -> None: ...

class VoidFeeDetailsResponse(_message.Message):
    __slots__ = ("encounter_id", "request_id", "voided_line_nos", "line_count", "total_fen")
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VOIDED_LINE_NOS_FIELD_NUMBER: _ClassVar[int]
    LINE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    encounter_id: str
    request_id: str
    voided_line_nos: _containers.RepeatedScalarFieldContainer[int]
    line_count: int
    total_fen: int
    def __init__(self, encounter_id: _Optional[str] = ..., request_id: _Optional[str] = ..., voided_line_nos: _Optional[_Iterable[int]] = ..., line_count: _Optional[int] = ..., total_fen: _Optional[int] = ...) -> None: ...

class RecordDischargeRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "encounter_id", "discharge_date", "diagnoses")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    DISCHARGE_DATE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    encounter_id: str
    discharge_date: str
    diagnoses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., encounter_id: _Optional[str] = ..., discharge_date: _Optional[str] = ..., diagnoses: _Optional[_Iterable[str]] = ...) -> None: ...

class SettleEncounterRequest(_message.Message):
    __slots__ = ("request_id", "institution_code", "encounter_id", "card_no", "pin", "skip_individual_account")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    SKIP_INDIVIDUAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    institution_code: str
    encounter_id: str
    card_no: str
    pin: str
    skip_individual_account: bool
    def __init__(self, request_id: _Optional[str] = ..., institution_code: _Optional[str] = ..., encounter_id: _Optional[str] = ..., card_no: _Optional[str] = ..., pin: _Optional[str] = ..., skip_individual_account: _Optional[bool] = ...) -> None: ...

class GetEncounterRequest(_message.Message):
    __slots__ = ("institution_code", "encounter_id")
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    ENCOUNTER_ID_FIELD_NUMBER: _ClassVar[int]
    institution_code: str
    encounter_id: str
    def __init__(self, institution_code: _Optional[str] = ..., encounter_id: _Optional[str] = ...) -> None: ...

class ReconcileTotalsRequest(_message.Message):
    __slots__ = ("institution_code", "business_date", "settlement_count", "medical_total_fen", "pooled_fund_fen", "serious_illness_fen", "individual_account_fen")
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_DATE_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEDICAL_TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    POOLED_FUND_FEN_FIELD_NUMBER: _ClassVar[int]
    SERIOUS_ILLNESS_FEN_FIELD_NUMBER: _ClassVar[int]
    INDIVIDUAL_ACCOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    institution_code: str
    business_date: str
    settlement_count: int
    medical_total_fen: int
    pooled_fund_fen: int
    serious_illness_fen: int
    individual_account_fen: int
    def __init__(self, institution_code: _Optional[str] = ..., business_date: _Optional[str] = ..., settlement_count: _Optional[int] = ..., medical_total_fen: _Optional[int] = ..., pooled_fund_fen: _Optional[int] = ..., serious_illness_fen: _Optional[int] = ..., individual_account_fen: _Optional[int] = ...) -> None: ...

class ReconcileTotalsResponse(_message.Message):
    __slots__ = ("matched", "switch_settlement_count", "switch_medical_total_fen", "switch_pooled_fund_fen", "switch_serious_illness_fen", "switch_individual_account_fen", "differences")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    SWITCH_SETTLEMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    SWITCH_MEDICAL_TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    SWITCH_POOLED_FUND_FEN_FIELD_NUMBER: _ClassVar[int]
    SWITCH_SERIOUS_ILLNESS_FEN_FIELD_NUMBER: _ClassVar[int]
    SWITCH_INDIVIDUAL_ACCOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCES_FIELD_NUMBER: _ClassVar[int]
    matched: bool
    switch_settlement_count: int
    switch_medical_total_fen: int
    switch_pooled_fund_fen: int
    switch_serious_illness_fen: int
    switch_individual_account_fen: int
    differences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, matched: _Optional[bool] = ..., switch_settlement_count: _Optional[int] = ..., switch_medical_total_fen: _Optional[int] = ..., switch_pooled_fund_fen: _Optional[int] = ..., switch_serious_illness_fen: _Optional[int] = ..., switch_individual_account_fen: _Optional[int] = ..., differences: _Optional[_Iterable[str]] = ...) -> None: ...

class ReconcileDetailRecord(_message.Message):
    __slots__ = ("institution_code", "business_date", "settlement_id", "request_id", "total_fen", "fund_total_fen", "status")
    INSTITUTION_CODE_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_DATE_FIELD_NUMBER: _ClassVar[int]
    SETTLEMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    FUND_TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    institution_code: str
    business_date: str
    settlement_id: str
    request_id: str
    total_fen: int
    fund_total_fen: int
    status: SettlementStatus
    def __init__(self, institution_code: _Optional[str] = ..., business_date: _Optional[str] = ..., settlement_id: _Optional[str] = ..., request_id: _Optional[str] = ..., total_fen: _Optional[int] = ..., fund_total_fen: _Optional[int] = ..., status: _Optional[_Union[SettlementStatus, str]] = ...) -> None: ...

class ReconcileDetailsResponse(_message.Message):
    __slots__ = ("matched_count", "missing_at_switch", "missing_at_institution", "mismatched")
    MATCHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    MISSING_AT_SWITCH_FIELD_NUMBER: _ClassVar[int]
    MISSING_AT_INSTITUTION_FIELD_NUMBER: _ClassVar[int]
    MISMATCHED_FIELD_NUMBER: _ClassVar[int]
    matched_count: int
    missing_at_switch: _containers.RepeatedScalarFieldContainer[str]
    missing_at_institution: _containers.RepeatedScalarFieldContainer[str]
    mismatched: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, matched_count: _Optional[int] = ..., missing_at_switch: _Optional[_Iterable[str]] = ..., missing_at_institution: _Optional[_Iterable[str]] = ..., mismatched: _Optional[_Iterable[str]] = ...) -> None: ...

class DownloadCatalogRequest(_message.Message):
    __slots__ = ("since_version",)
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    def __init__(self, since_version: _Optional[int] = ...) -> None: ...

class CatalogItem(_message.Message):
    __slots__ = ("code", "name", "kind", "item_class", "preselfpay_bp", "price_cap_fen", "rx", "restrictions", "version", "deleted")
    CODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ITEM_CLASS_FIELD_NUMBER: _ClassVar[int]
    PRESELFPAY_BP_FIELD_NUMBER: _ClassVar[int]
    PRICE_CAP_FEN_FIELD_NUMBER: _ClassVar[int]
    RX_FIELD_NUMBER: _ClassVar[int]
    RESTRICTIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    code: str
    name: str
    kind: CatalogKind
    item_class: str
    preselfpay_bp: int
    price_cap_fen: int
    rx: str
    restrictions: _containers.RepeatedScalarFieldContainer[str]
    version: int
    deleted: bool
    def __init__(self, code: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[CatalogKind, str]] = ..., item_class: _Optional[str] = ..., preselfpay_bp: _Optional[int] = ..., price_cap_fen: _Optional[int] = ..., rx: _Optional[str] = ..., restrictions: _Optional[_Iterable[str]] = ..., version: _Optional[int] = ..., deleted: _Optional[bool] = ...) -> None: ...
