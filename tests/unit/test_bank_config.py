"""The fund's paying account: options win over the environment; unset is refused."""

from __future__ import annotations

import argparse

import pytest

from switch.commands.payouts import DEFAULT_FUND_NAME, add_fund_options, fund_account


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fund_options(parser)
    return parser.parse_args(argv)


def test_environment_gives_the_account() -> None:
    env = {"MEDSWITCH_FUND_ACCOUNT": " 6222 ", "MEDSWITCH_FUND_BANK_CODE": "102331000016"}
    account = fund_account(parse(), env)
    assert (account.account_id, account.owner_name, account.agent_id, account.agent_bic) == (
        "6222",
        DEFAULT_FUND_NAME,
        "102331000016",
        None,
    )


def test_options_win_over_the_environment() -> None:
    env = {"MEDSWITCH_FUND_ACCOUNT": "ENV", "MEDSWITCH_FUND_NAME": "Env fund"}
    account = fund_account(parse("--fund-account", "OPT", "--fund-bank-bic", "ICBKCNBJXXX"), env)
    assert (account.account_id, account.owner_name, account.agent_bic) == (
        "OPT",
        "Env fund",
        "ICBKCNBJXXX",
    )


def test_an_unconfigured_account_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="MEDSWITCH_FUND_ACCOUNT"):
        fund_account(parse(), {})
