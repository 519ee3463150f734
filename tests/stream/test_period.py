"""Period close: records streamed through a real redis-server, closed, frozen and scored, give the
files ``riskprop score --periods 1`` gives for a file of the same records, and the secure run on
them equals the plaintext engine on the batch files; late records land in the next period."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import KEY_BITS
from stream.brokers import redis_broker

from riskprop.config import StreamSettings
from riskprop.errors import ConfigError
from riskprop.lab.rawgen import EPOCH, generate_raw
from riskprop.lab.simulate import simulate_plaintext, simulate_secure
from riskprop.scoring.output import OUTPUT_FILES
from riskprop.scoring.pipeline import score_bank
from riskprop.stream.consumer import Consumer
from riskprop.stream.period import RAW_FILE, close_and_score, close_through, period_folder
from riskprop.stream.records import RecordRules, Transaction, parse
from riskprop.stream.store import PeriodStore

DAY = 86_400
BANKS = ["alice", "bob"]


def settings(tmp: Path) -> StreamSettings:
    return StreamSettings(
        broker="redis",
        address="redis://127.0.0.1:1/0",
        topic="tx",
        group="node",
        consumer="c",
        dead_letters="tx.dead",
        alerts="tx.alerts",
        store=tmp / "store.db",
        alert_log=tmp / "alerts.jsonl",
        origin=EPOCH,
        period_length=DAY,
        close_after=0,
    )


def lines(path: Path) -> tuple[bytes, list[bytes]]:
    header, *rows = path.read_bytes().splitlines()
    return header, rows


def consume(broker_folder: Path, bank: str, rows: list[bytes], store: PeriodStore) -> None:
    """``rows`` through a real redis-server into ``store`` in batches of 101."""
    with redis_broker(broker_folder) as broker:
        broker.produce(rows)
        consumer = Consumer(broker.source(f"{bank}-1"), store, RecordRules(bank=bank), batch=101)
        while consumer.step(wait=0.05) is not None:
            pass


def test_a_closed_period_is_the_batch_input_of_the_same_records(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=BANKS, accounts=400, transactions=3000, days=4, seed=3)
    period = 1  # the second day: records before and after it are in the stream too
    streamed = tmp_path / "streamed"
    batch = tmp_path / "batch"
    for bank in BANKS:
        raw = tmp_path / "gen" / bank / "raw.csv"
        header, rows = lines(raw)
        config = settings(tmp_path / bank)
        store = PeriodStore(config.store, origin=config.origin, length=config.period_length)
        consume(tmp_path / f"redis-{bank}", bank, rows, store)
        closed = close_and_score(
            store, config, period, bank=bank, root=tmp_path / bank / "periods", members=BANKS
        )
        store.close()
        assert closed.late == 0
        assert (closed.start, closed.end) == (EPOCH + DAY, EPOCH + 2 * DAY)
        # the batch file: the same records of the day, in the order they were produced
        in_period = []
        for row in rows:
            tx = parse(row, RecordRules(bank=bank))
            assert isinstance(tx, Transaction)
            if closed.start <= tx.time < closed.end:
                in_period.append(row)
        assert closed.transactions == len(in_period) > 100
        (tmp_path / "files").mkdir(exist_ok=True)
        day_file = tmp_path / "files" / f"{bank}.csv"
        day_file.write_bytes(b"\n".join([header, *in_period]) + b"\n")
        score_bank(day_file, bank, batch, periods=1, members=BANKS)
        for name in OUTPUT_FILES:
            assert (closed.data / bank / name).read_bytes() == (batch / bank / name).read_bytes()
        for path in [closed.data.parent, closed.data, *closed.data.rglob("*")]:
            assert path.stat().st_mode & 0o077 == 0, path  # owner-only, whatever the umask
        shutil.copytree(closed.data / bank, streamed / bank)

    secure = simulate_secure(streamed, iterations=3, delta_a=0.5, key_bits=KEY_BITS)
    plain = simulate_plaintext(batch, iterations=3, delta_a=0.5)
    assert secure.account_ids == plain.account_ids
    assert float(np.max(np.abs(secure.scores - plain.scores))) <= 1e-6


def test_late_records_go_into_the_next_period_and_are_counted(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=BANKS, accounts=300, transactions=1500, days=3, seed=5)
    _, rows = lines(tmp_path / "gen" / "alice" / "raw.csv")
    config = settings(tmp_path)
    store = PeriodStore(config.store, origin=config.origin, length=config.period_length)
    rules = RecordRules(bank="alice")
    first_day = [r for r in rows if _time(r, rules) < EPOCH + DAY]
    later = [r for r in rows if _time(r, rules) >= EPOCH + DAY]
    consume(tmp_path / "redis-1", "alice", first_day, store)
    closed = close_and_score(store, config, 0, bank="alice", root=tmp_path / "p", members=BANKS)
    assert closed.newly_closed == (0,)
    frozen = (closed.data / RAW_FILE).read_bytes()
    # the same day's records again under new ids arrive after the close: late, into period 1
    again = [b"late-" + r for r in first_day[:40]]
    consume(tmp_path / "redis-2", "alice", again + later, store)
    assert store.counts()["late"] == 40
    reclosed = close_and_score(store, config, 0, bank="alice", root=tmp_path / "p", members=BANKS)
    assert (reclosed.data / RAW_FILE).read_bytes() == frozen  # a closed period never changes
    assert reclosed.newly_closed == ()
    next_one = close_and_score(store, config, 1, bank="alice", root=tmp_path / "p", members=BANKS)
    assert next_one.late == 40
    assert next_one.transactions == 40 + sum(1 for r in later if _time(r, rules) < EPOCH + 2 * DAY)
    text = (next_one.data / RAW_FILE).read_text()
    assert text.count("\nlate-") == 40
    # scored as one period although the late records' times lie in the day before
    periods = {
        line.rsplit(",", 1)[1]
        for line in (next_one.data / "alice" / "transactions.csv").read_text().splitlines()[1:]
    }
    assert periods == {"0"}
    store.close()


def test_closing_a_period_closes_the_periods_before_it(tmp_path: Path) -> None:
    config = settings(tmp_path)
    store = PeriodStore(config.store, origin=config.origin, length=config.period_length)
    store.close_period(2)
    assert close_through(store, 5) == (3, 4, 5)
    assert store.closed() == [2, 3, 4, 5]
    assert period_folder(tmp_path, 5, config).name == "2026-01-06T0000-p5"
    store.close()


def test_an_empty_period_is_one_error_line(tmp_path: Path) -> None:
    config = settings(tmp_path)
    store = PeriodStore(config.store, origin=config.origin, length=config.period_length)
    with pytest.raises(ConfigError, match=r"period 7 \(2026-01-08T00:00:00Z to 2026-01-09") as e:
        close_and_score(store, config, 7, bank="alice", root=tmp_path / "p", members=BANKS)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "p" / period_folder(tmp_path, 7, config).name / "alice").exists()
    store.close()


def test_a_store_of_other_periods_is_refused(tmp_path: Path) -> None:
    config = settings(tmp_path)
    store = PeriodStore(config.store, origin=config.origin, length=3600)
    with pytest.raises(ConfigError, match="differ from the configuration"):
        close_and_score(store, config, 0, bank="alice", root=tmp_path, members=BANKS)
    store.close()


def _time(row: bytes, rules: RecordRules) -> int:
    tx = parse(row, rules)
    assert isinstance(tx, Transaction)
    return tx.time


def test_purging_keeps_the_kept_periods_and_forgets_the_older_ones(tmp_path: Path) -> None:
    generate_raw(tmp_path / "gen", banks=BANKS, accounts=200, transactions=1200, days=4, seed=6)
    _, rows = lines(tmp_path / "gen" / "alice" / "raw.csv")
    rules = RecordRules(bank="alice")
    config = settings(tmp_path)
    store = PeriodStore(config.store, origin=config.origin, length=config.period_length)
    parsed = [parse(row, rules) for row in rows]
    store.put([(f"d{i}", r, b"") for i, r in enumerate(parsed)], lambda new: [(new[0].tx_id, b"m")])
    before = store.periods()
    assert sorted(before) == [0, 1, 2, 3]
    close_through(store, 3)
    store.mark_sent([k for k, _ in store.unsent()])
    assert store.purge(before=2) == before[0] + before[1]
    assert store.periods() == {2: before[2], 3: before[3]}
    assert store.unsent() == [] and store.purge(before=2) == 0
    # a record of a purged period sent again is a new transaction, late into the first open one
    first = parsed[0]
    assert isinstance(first, Transaction) and first.time < EPOCH + DAY
    put = store.put([("again", first, b"")])
    assert (put.stored, put.late, store.periods()[4]) == (1, 1, 1)
    store.close()
