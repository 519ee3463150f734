"""Raw transaction layouts: riskprop's own and AMLworld's, read from small files; time zones,
conversion, own accounts, and every bad input as one line naming file:line and the field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from riskprop.errors import ConfigError, InputError
from riskprop.lab import amlworld
from riskprop.scoring.raw import (
    AMLWORLD_CURRENCIES,
    AMLWORLD_HEADER,
    DEFAULT_RATES,
    RISKPROP_HEADER,
    Coded,
    Texts,
    own_accounts,
    read_raw,
)

HEADER = ",".join(RISKPROP_HEADER)
AML_HEADER = ",".join(AMLWORLD_HEADER)
ROWS = [
    "t1,2026-11-29T23:15:00+01:00,a1,alice,b1,bob,100.50,EUR,Cash,Branch,NL,,completed",
    "t2,2026-11-29T22:15:00Z,a2,alice,a1,alice,9999.99,usd,wire,,,ir,FAILED",
    "t3,2026-11-30T01:00:00-05:30,b2,bob,a2,alice,1.5e3,USD,ach,online,us,NL,reversed",
]


def write(tmp_path: Path, header: str, rows: list[str], name: str = "raw.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def test_riskprop_layout(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, HEADER, ROWS))
    assert raw.n == 3
    assert raw.line.tolist() == [2, 3, 4]
    assert raw.tx_id.tolist() == ["t1", "t2", "t3"]
    # +01:00 at 23:15 local is 22:15 UTC; -05:30 at 01:00 is 06:30 UTC
    assert raw.time.tolist() == [
        utc("2026-11-29T22:15:00+00:00"),
        utc("2026-11-29T22:15:00+00:00"),
        utc("2026-11-30T06:30:00+00:00"),
    ]
    assert raw.utc_offset.tolist() == [3600, 0, -19800]
    assert raw.utc_offset.dtype == np.int32 and raw.time.dtype == np.int64
    local = datetime.fromtimestamp(int(raw.time[0] + raw.utc_offset[0]), tz=UTC)
    assert (local.hour, local.minute) == (23, 15)
    assert raw.source.tolist() == ["a1", "a2", "b2"]
    assert raw.source_bank.tolist() == ["alice", "alice", "bob"]
    assert raw.target.tolist() == ["b1", "a1", "a2"]
    assert raw.target_bank.tolist() == ["bob", "alice", "alice"]
    assert raw.currency.tolist() == ["EUR", "USD", "USD"]
    assert raw.original_amount.tolist() == [100.5, 9999.99, 1500.0]
    assert raw.amount == pytest.approx([100.5 / 0.85, 9999.99, 1500.0])
    assert raw.kind.tolist() == ["cash", "wire", "ach"]
    assert raw.channel.tolist() == ["branch", "", "online"]
    assert raw.source_country.tolist() == ["NL", "", "US"]
    assert raw.target_country.tolist() == ["", "IR", "NL"]
    assert raw.status.tolist() == ["completed", "failed", "reversed"]
    assert raw.label is None


def test_conversion_to_another_currency_and_rates(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, ROWS)
    euros = read_raw(path, currency="eur")
    assert euros.amount == pytest.approx([100.5, 9999.99 * 0.85, 1500.0 * 0.85])
    own = read_raw(path, rates={"EUR": 1.0, "USD": 2.0}, currency="EUR")
    assert own.amount == pytest.approx([100.5, 9999.99 / 2, 750.0])
    assert own.original_amount.tolist() == [100.5, 9999.99, 1500.0]
    with pytest.raises(InputError, match=r"raw\.csv:2: currency 'EUR' has no exchange rate"):
        read_raw(path, rates={"USD": 1.0})
    with pytest.raises(ConfigError, match="reporting currency 'AUD' has no rate"):
        read_raw(path, rates={"USD": 1.0}, currency="AUD")
    with pytest.raises(ConfigError, match="rate of 'USD' must be a positive number"):
        read_raw(path, rates={"USD": 0.0})
    with pytest.raises(ConfigError, match="layout must be"):
        read_raw(path, layout="csv")


def test_own_accounts(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, HEADER, ROWS))
    assert own_accounts(raw, "alice").tolist() == ["a1", "a2"]
    assert own_accounts(raw, "bob").tolist() == ["b1", "b2"]
    assert own_accounts(raw, "carol").tolist() == []


AML_ROWS = [
    "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,"
    "Reinvestment,0",
    "2022/09/01 00:22,3208,8000F4580,1,8000F5340,0.01,US Dollar,8.50,Euro,Cheque,1",
    "2022/09/02 13:05,10,8000A,010,8000EBD30,1,Yen,105,Yen,Credit Card,0",
]


def test_amlworld_layout(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, AML_HEADER, AML_ROWS))
    assert raw.tx_id.tolist() == ["2", "3", "4"]
    assert raw.line.tolist() == [2, 3, 4]
    assert raw.time.tolist() == [
        utc("2022-09-01T00:20:00+00:00"),
        utc("2022-09-01T00:22:00+00:00"),
        utc("2022-09-02T13:05:00+00:00"),
    ]
    assert raw.utc_offset.tolist() == [0, 0, 0]
    assert raw.source.tolist() == ["010:8000EBD30", "3208:8000F4580", "10:8000A"]
    assert raw.target.tolist() == ["010:8000EBD30", "1:8000F5340", "010:8000EBD30"]
    assert raw.source_bank.tolist() == ["010", "3208", "10"]
    assert raw.target_bank.tolist() == ["010", "1", "010"]
    # Amount Paid in Payment Currency
    assert raw.currency.tolist() == ["USD", "EUR", "JPY"]
    assert raw.original_amount.tolist() == [3697.34, 8.5, 105.0]
    assert raw.amount == pytest.approx([3697.34, 10.0, 1.0])
    assert raw.kind.tolist() == ["reinvestment", "cheque", "credit card"]
    assert raw.status.tolist() == ["completed"] * 3
    assert raw.channel.tolist() == raw.source_country.tolist() == [""] * 3
    assert raw.target_country.tolist() == [""] * 3
    assert raw.label is not None and raw.label.tolist() == [False, True, False]
    assert own_accounts(raw, "010").tolist() == ["010:8000EBD30"]
    assert own_accounts(raw, "10").tolist() == ["10:8000A"]


def test_amlworld_without_label_and_explicit_layout(tmp_path: Path) -> None:
    header = ",".join(AMLWORLD_HEADER[:-1])
    rows = [row.rsplit(",", 1)[0] for row in AML_ROWS]
    raw = read_raw(write(tmp_path, header, rows), layout="amlworld")
    assert raw.label is None and raw.n == 3
    with pytest.raises(InputError, match=r"raw\.csv:1: unknown column set .* expected riskprop"):
        read_raw(tmp_path / "raw.csv", layout="riskprop")


def test_amlworld_rates_are_the_importers() -> None:
    """The AMLworld importer's table is DEFAULT_RATES under AMLworld's currency names."""
    assert set(AMLWORLD_CURRENCIES) == set(amlworld.RATES)
    derived = {name: DEFAULT_RATES[code] for name, code in AMLWORLD_CURRENCIES.items()}
    assert derived == dict(amlworld.RATES)


def test_blank_lines_and_quoted_line_breaks_keep_physical_lines(tmp_path: Path) -> None:
    rows = [ROWS[0], "", '"t\n2",2026-11-29T22:15:00Z,a2,alice,a1,alice,1,USD,wire,,,,completed']
    path = write(tmp_path, HEADER, rows)
    with pytest.raises(InputError, match=r"raw\.csv:4: tx_id 't\\n2' holds a comma"):
        read_raw(path)
    rows[2] = rows[2].replace('"t\n2"', "t2").replace(",wire,", ',"wi\nre",')
    rows.append("t3,2026-11-29T22:15:00Z,a2,alice,a1,alice,x,USD,wire,,,,completed")
    with pytest.raises(InputError, match=r"raw\.csv:6: amount 'x' is not a decimal number"):
        read_raw(write(tmp_path, HEADER, rows))
    raw = read_raw(write(tmp_path, HEADER, rows[:3]))
    assert raw.line.tolist() == [2, 4]
    assert raw.kind.tolist() == ["cash", "wi\nre"]


def bad_row(field: str, value: str) -> str:
    values = dict(zip(RISKPROP_HEADER, ROWS[1].split(","), strict=True))
    values[field] = value
    return ",".join(values[column] for column in RISKPROP_HEADER)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("timestamp", "2026-11-29 22:15:00Z", "timestamp '2026-11-29 22:15:00Z' is not a time"),
        ("timestamp", "2026-11-29T22:15:00", "timestamp '2026-11-29T22:15:00' is not a time"),
        ("timestamp", "2026-02-30T22:15:00Z", "timestamp '2026-02-30T22:15:00Z' is not a time"),
        ("timestamp", "2026-11-29T25:15:00Z", "timestamp '2026-11-29T25:15:00Z' is not a time"),
        ("timestamp", "2026-11-29T22:15:00+19:00", "has an offset beyond"),
        ("timestamp", "2026-11-29T22:15:00+01:60", "has an offset beyond"),
        ("amount", "-5", "amount '-5' is negative"),
        ("amount", "12,5", "fields, expected 13"),
        ("amount", "1.2.3", "amount '1.2.3' is not a decimal number"),
        ("amount", "", "amount '' is not a decimal number"),
        ("amount", "1e999", "amount '1e999' is too large"),
        ("currency", "US", "currency 'US' is not an ISO 4217 code"),
        ("currency", "XYZ", "currency 'XYZ' has no exchange rate"),
        ("status", "done", "status 'done' is not one of completed, failed, reversed"),
        ("source_country", "NLD", "source_country 'NLD' is not an ISO 3166 alpha-2 code"),
        ("target", "", "target '' is empty"),
        ("source_bank", "", "source_bank '' is empty"),
        ("tx_id", "t1", "tx_id 't1' is not unique"),
        ("tx_id", "", "tx_id '' is empty"),
    ],
)
def test_bad_riskprop_field(tmp_path: Path, field: str, value: str, problem: str) -> None:
    path = write(tmp_path, HEADER, [ROWS[0], ROWS[0].replace("t1", "t0"), bad_row(field, value)])
    with pytest.raises(InputError) as caught:
        read_raw(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:4: "), message
    assert problem in message


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        (0, "2022/09/31 00:20", "Timestamp '2022/09/31 00:20' is not a time YYYY/MM/DD HH:MM"),
        (0, "2022/9/1 00:20", "Timestamp '2022/9/1 00:20' is not a time"),
        (1, "", "From Bank '' is empty"),
        (3, "0:1", "To Bank '0:1' holds a comma, quote, colon or line break"),
        (2, "", "Account (column 3, the payer's) '' is empty"),
        (7, "abc", "Amount Paid 'abc' is not a decimal number"),
        (7, "-1", "Amount Paid '-1' is negative"),
        (8, "Dinar", "Payment Currency 'Dinar' is not an AMLworld currency"),
        (10, "2", "Is Laundering '2' is not 0 or 1"),
        (10, "", "Is Laundering '' is not 0 or 1"),
        (5, "x", None),  # Amount Received is not used
    ],
)
def test_bad_amlworld_field(tmp_path: Path, column: int, value: str, problem: str | None) -> None:
    fields = AML_ROWS[1].split(",")
    fields[column] = value
    path = write(tmp_path, AML_HEADER, [AML_ROWS[0], ",".join(fields)])
    if problem is None:
        assert read_raw(path).n == 2
        return
    with pytest.raises(InputError) as caught:
        read_raw(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:3: "), message
    assert problem in message


def test_amlworld_currency_without_a_rate(tmp_path: Path) -> None:
    path = write(tmp_path, AML_HEADER, AML_ROWS)
    with pytest.raises(InputError, match=r"raw\.csv:4: Payment Currency 'Yen' has no exchange"):
        read_raw(path, rates={"USD": 1.0, "EUR": 0.85})


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_raw(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="is a directory"):
        read_raw(tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(InputError, match="file is empty"):
        read_raw(empty)
    with pytest.raises(InputError, match=r"only\.csv: no transactions after the header"):
        read_raw(write(tmp_path, HEADER, [], "only.csv"))
    wrong = write(tmp_path, HEADER.replace("channel", "chanel"), ROWS, "wrong.csv")
    with pytest.raises(
        InputError, match=r"wrong\.csv:1: unknown column set .*chanel.* or amlworld"
    ):
        read_raw(wrong)
    short = write(tmp_path, HEADER, [ROWS[0], "t9,2026-11-29T22:15:00Z,a2"], "short.csv")
    with pytest.raises(InputError, match=r"short\.csv:3: 3 fields, expected 13"):
        read_raw(short)


def test_the_first_bad_row_is_reported(tmp_path: Path) -> None:
    """Several problems: the one on the earliest line wins, whatever its column."""
    rows = [ROWS[0], bad_row("status", "done"), bad_row("amount", "-1").replace("t2", "t5")]
    with pytest.raises(InputError, match=r"raw\.csv:3: status 'done'"):
        read_raw(write(tmp_path, HEADER, rows))


def test_many_rows(tmp_path: Path) -> None:
    """200,000 generated rows read through the vectorised path with the right values."""
    n = 200_000
    rng = np.random.default_rng(0)
    seconds = 1_790_000_000 + np.sort(rng.integers(0, 86_400 * 30, n))
    stamps = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    accounts = rng.integers(0, 5_000, (2, n))
    cents = rng.integers(0, 10_000_000, n)
    lines = [HEADER]
    for i in range(n):
        lines.append(
            f"t{i},{stamps[i]}Z,a{accounts[0, i]},alice,b{accounts[1, i]},bob,"
            f"{cents[i] // 100}.{cents[i] % 100:02d},USD,cash,,NL,,completed"
        )
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = read_raw(path)
    assert raw.n == n
    assert np.array_equal(raw.time, seconds)
    assert np.allclose(raw.amount, cents / 100)
    assert raw.line[-1] == n + 1
    assert len(own_accounts(raw, "alice")) == len(np.unique(accounts[0]))


def test_coded_columns_share_one_sorted_table_of_values() -> None:
    source, target = Coded.shared([["b", "a", "c"], ["c", "d", "a"]])
    assert source.values.tolist() == ["a", "b", "c", "d"] and target.values is source.values
    assert source.codes.dtype == np.int32
    assert source.tolist() == ["b", "a", "c"] and target.tolist() == ["c", "d", "a"]
    assert source.codes[2] == target.codes[0]  # equal values, equal codes across the sides
    assert source[1] == "a" and source[np.array([2, 0])].tolist() == ["c", "b"]
    assert source.code("c") == 2 and source.code("zz") == -1 and source.code("") == -1
    assert source.equals("a").tolist() == [False, True, False]
    assert target.isin({"a", "d", "q"}).tolist() == [False, True, True]
    assert source.lookup({"b": 2.0}, -1.0).tolist() == [2.0, -1.0, -1.0]
    assert target.take(np.array([1, 1])).to_pylist() == ["d", "d"]
    assert target.take().to_pylist() == ["c", "d", "a"]


def test_texts_take_and_index() -> None:
    ids = Texts.of(["t1", "t2", "t3"])
    assert len(ids) == 3 and ids[1] == "t2" and ids.tolist() == ["t1", "t2", "t3"]
    assert ids[np.array([2, 0])].tolist() == ["t3", "t1"]
    assert ids[np.array([True, False, True])].tolist() == ["t1", "t3"]
    assert ids.take(np.array([1])).to_pylist() == ["t2"]
    assert ids[np.array([-1, 0])].tolist() == ["t3", "t1"]  # numpy's negative positions
    assert ids[1:].tolist() == ["t2", "t3"]


def test_read_columns_are_coded_case_folded_and_shared(tmp_path: Path) -> None:
    """Normalised values that were written differently ('Cash', 'cash') share one code."""
    rows = [
        "t1,2026-11-29T10:00:00Z,a1,alice,b1,bob,1,usd,Cash,,nl,,completed",
        "t2,2026-11-29T10:00:00Z,b1,bob,a1,alice,1,USD,cash,,,NL,Completed",
    ]
    raw = read_raw(write(tmp_path, HEADER, rows))
    assert raw.kind.values.tolist() == ["cash"] and raw.kind.codes.tolist() == [0, 0]
    assert raw.status.values.tolist() == ["completed"]
    assert raw.currency.values.tolist() == ["USD"]
    assert raw.source.values is raw.target.values
    assert raw.source_bank.values is raw.target_bank.values
    assert raw.source.codes.tolist() == raw.target.codes[::-1].tolist()
    assert raw.source_country.tolist() == ["NL", ""] and raw.target_country.tolist() == ["", "NL"]
