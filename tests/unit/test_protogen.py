"""The committed generated code is exactly what `python -m switch.protogen` makes."""

from __future__ import annotations

from pathlib import Path

from switch import protogen


def test_generated_code_is_current(tmp_path: Path) -> None:
    """Regenerating into a temporary dir reproduces every committed file byte for byte."""
    written = protogen.generate(out_dir=tmp_path)
    assert written, "no .proto files found"
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = protogen.REPO_ROOT / rel
        assert committed.exists(), f"{rel} not committed: run python -m switch.protogen"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{rel} differs from the .proto: run python -m switch.protogen"
        )


def test_contract_names_match_api_md() -> None:
    """Services and methods are spelled as in docs/integrators.md."""
    from switch.proto import medswitch_pb2 as pb

    services = {
        name: [m.name for m in svc.methods] for name, svc in pb.DESCRIPTOR.services_by_name.items()
    }
    assert pb.DESCRIPTOR.package == "medswitch.v1"
    assert services == {
        "SettlementService": ["PreSettle", "Settle", "CancelSettlement", "GetSettlement"],
        "MemberService": ["GetMember", "ListAccountActivity"],
        "ReconciliationService": ["ReconcileTotals", "ReconcileDetails"],
        "CatalogService": ["DownloadCatalog"],
        # Added (issue 16): inpatient stays as hospitals run them.
        "EncounterService": [
            "RegisterAdmission",
            "CancelAdmission",
            "UploadFeeDetails",
            "VoidFeeDetails",
            "RecordDischarge",
            "PreSettleEncounter",
            "SettleEncounter",
            "GetEncounter",
        ],
    }
    recon = pb.DESCRIPTOR.services_by_name["ReconciliationService"].methods_by_name
    assert recon["ReconcileDetails"].client_streaming
    cat = pb.DESCRIPTOR.services_by_name["CatalogService"].methods_by_name
    assert cat["DownloadCatalog"].server_streaming
    assert [f.name for f in pb.Split.DESCRIPTOR.fields] == [
        "total_fen",
        "full_selfpay_fen",
        "overlimit_selfpay_fen",
        "preselfpay_fen",
        "in_scope_fen",
        "deductible_fen",
        "pooled_fund_fen",
        "serious_illness_fen",
        "institution_waiver_fen",
        "individual_account_fen",
        "patient_cash_fen",
    ]
    assert pb.VisitType.Name(4) == "VISIT_TYPE_PHARMACY"
    assert pb.InjuryCause.Name(8) == "INJURY_CAUSE_MATERNITY"
    assert pb.SettlementStatus.Name(4) == "SETTLEMENT_STATUS_CANCELLED"
    assert pb.MemberCategory.Name(4) == "MEMBER_CATEGORY_RETIRED_CADRE"
    assert pb.MemberStatus.Name(3) == "MEMBER_STATUS_DECEASED"
