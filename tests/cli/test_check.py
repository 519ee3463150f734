"""``riskprop check --player NAME``: a correct set-up passes; each misconfiguration is one line
naming the file or field; warnings (a certificate expiring soon, a peer that is down) do not
fail the check; a peer's listener really answers the ping."""

from __future__ import annotations

import asyncio
import datetime
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from riskprop.cli import cli
from riskprop.config import load_player_config
from riskprop.files.keys import dealer_keygen, load_public, spaced
from riskprop.localnet.harness import free_ports, write_configs
from riskprop.localnet.setup import setup_local
from riskprop.node.check import check_node
from riskprop.node.http import HttpTransport
from riskprop.node.pki import make_ca, make_request, sign_request
from riskprop.node.runner import http_settings
from riskprop.node.tls import certificate_fingerprint

PARTIES = ("alice", "bob", "charlie")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """certs/, keys/ (a dealt 512-bit key), data/ and configs/ of a three-bank network."""
    root = tmp_path_factory.mktemp("net")
    setup_local(root, PARTIES, key_bits=512, accounts=30, edges=60, seed=1)
    run = {"run_id": "check-test", "iterations": 2, "periods": [0]}
    write_configs(
        root / "configs",
        data=root / "data",
        keys=root / "keys",
        certs=root / "certs",
        out=root / "out",
        parties=PARTIES,
        run=run,
    )
    return root


@pytest.fixture
def configs(local: Path, tmp_path: Path) -> Path:
    """An editable copy of the configuration (its paths still reach the module's files)."""
    return Path(shutil.copytree(local / "configs", tmp_path / "configs"))


def check(configs: Path, *args: str, player: str = "alice") -> tuple[int, list[str]]:
    """Exit code and output lines of ``riskprop check``; never a traceback."""
    argv = ["check", "--player", player, "--config", str(configs), *args]
    result = CliRunner().invoke(cli, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    assert lines and all(ln.startswith(("ok: ", "warning: ", "error: ")) for ln in lines[:-1]), [
        ln for ln in lines[:-1] if not ln.startswith(("ok: ", "warning: ", "error: "))
    ]
    assert f"{player}: check " in lines[-1]  # the summary
    return result.exit_code, lines


def level(lines: list[str], name: str) -> list[str]:
    return [ln for ln in lines if ln.startswith(f"{name}: ")]


def one_error(configs: Path, *args: str) -> str:
    """The check fails with exactly one error line, returned."""
    code, lines = check(configs, "--no-network", *args)
    errors = level(lines, "error")
    assert code == 1 and len(errors) == 1, lines
    assert "check failed" in lines[-1]
    return errors[0]


def edit(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def use_certificate(configs: Path, cert: Path, key: Path) -> None:
    edit(
        configs / "alice.yaml", lambda d: d.update(tls={"certificate": str(cert), "key": str(key)})
    )


def signed_for(
    ca: Path,
    tmp_path: Path,
    days: int,
    start_days_ago: float = 0,
    hosts: Sequence[str] = ("127.0.0.1",),
) -> Path:
    """``tmp_path/tls/alice.pem``: a new key (``alice.key``) and certificate for alice, signed
    by the CA in directory ``ca`` (the network's: ``certs/``)."""
    request = make_request(tmp_path / "tls", "alice", hosts)
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=start_days_ago)
    out = tmp_path / "tls" / "alice.pem"
    sign_request(request.csr, ca=ca, out=out, days=days, start=start)
    return out


# ---------------------------------------------------------------------- passing


def test_a_correct_set_up_passes(local: Path, configs: Path) -> None:
    code, lines = check(configs)
    assert code == 0 and not level(lines, "error"), lines
    key = load_public(local / "keys" / "public.json")
    assert any(ln.startswith("ok: key share") and spaced(key.fingerprint()) in ln for ln in lines)
    fingerprint = certificate_fingerprint(local / "certs" / "alice.pem")
    assert any(ln.startswith("ok: TLS certificate") and fingerprint in ln for ln in lines)
    for needed in ("ok: configuration", "ok: data ", "ok: output ", "ok: TLS key"):
        assert any(ln.startswith(needed) for ln in lines), (needed, lines)
    # the peers are down: a warning each, not an error
    assert [ln.split(" at ")[0] for ln in level(lines, "warning")] == [
        "warning: peer bob",
        "warning: peer charlie",
    ]
    assert all("not reachable" in ln for ln in level(lines, "warning"))
    assert "check passed" in lines[-1]
    code, lines = check(configs, "--no-network")
    assert code == 0 and not level(lines, "warning") and "peer" not in "".join(lines)


def test_a_reachable_peer_is_ok(configs: Path) -> None:
    with listening(configs, "bob"):
        code, lines = check(configs, "--timeout", "30")
    assert code == 0, lines
    assert any(ln.startswith("ok: peer bob at https://127.0.0.1:") for ln in lines), lines
    assert any(ln.startswith("warning: peer charlie") for ln in lines), lines


def test_a_peer_answering_as_another_is_an_error(configs: Path) -> None:
    """bob's address in the network file leads to charlie's node."""
    charlie = load_player_config(configs, "charlie").network.party("charlie").url

    def move_bob(data: dict[str, Any]) -> None:
        data["parties"][1]["url"] = charlie

    edit(configs / "network.yaml", move_bob)
    with listening(configs, "charlie"):
        code, lines = check(configs, "--timeout", "30")
    assert code == 1, lines
    [error] = level(lines, "error")
    assert error.startswith(f"error: peer bob at {charlie}: ") and "not bob" in error, error
    assert any(ln.startswith("ok: peer charlie") for ln in lines), lines


# ------------------------------------------------------------------ misconfigured


def test_missing_data_directory(configs: Path, tmp_path: Path) -> None:
    error = one_error(configs, "--data", str(tmp_path / "nowhere"))
    assert "alice.yaml: data: directory not found:" in error and "nowhere" in error


def test_key_share_of_another_network(configs: Path, tmp_path: Path) -> None:
    dealer_keygen(tmp_path / "keys", ["alice", "bob", "dave"], 1, 512)
    error = one_error(configs, "--key-share", str(tmp_path / "keys" / "alice.share.json"))
    assert "the key's parties (alice, bob, dave) differ from the network's" in error


def test_key_share_readable_by_others(local: Path, configs: Path, tmp_path: Path) -> None:
    share = tmp_path / "alice.share.json"
    shutil.copy(local / "keys" / "alice.share.json", share)
    share.chmod(0o644)
    error = one_error(configs, "--key-share", str(share))
    assert f"{share}: key share is accessible by group/others (mode 0644)" in error


def test_tls_key_not_matching_the_certificate(local: Path, configs: Path) -> None:
    use_certificate(configs, local / "certs" / "alice.pem", local / "certs" / "bob.key")
    error = one_error(configs)
    assert "bob.key: does not match the certificate" in error and "alice.pem" in error


@pytest.mark.parametrize(
    ("days", "start_days_ago", "problem"),
    [(1, 30, "expired on"), (30, -2, "is not valid before")],
)
def test_certificate_expired_or_not_yet_valid(
    local: Path, configs: Path, tmp_path: Path, days: int, start_days_ago: float, problem: str
) -> None:
    cert = signed_for(local / "certs", tmp_path, days=days, start_days_ago=start_days_ago)
    use_certificate(configs, cert, tmp_path / "tls" / "alice.key")
    error = one_error(configs)
    assert error.startswith(f"error: {cert}: the certificate {problem} ")


def test_certificate_expiring_soon_is_a_warning(local: Path, configs: Path, tmp_path: Path) -> None:
    cert = signed_for(local / "certs", tmp_path, days=10)
    use_certificate(configs, cert, tmp_path / "tls" / "alice.key")
    code, lines = check(configs, "--no-network")
    assert code == 0 and not level(lines, "error"), lines
    [warning] = level(lines, "warning")
    assert warning.startswith(f"warning: {cert}: the certificate expires on ")
    assert "in 10 day(s): renew it" in warning


def test_certificate_for_another_name(local: Path, configs: Path) -> None:
    use_certificate(configs, local / "certs" / "bob.pem", local / "certs" / "bob.key")
    error = one_error(configs)
    assert "bob.pem: the certificate is for 'bob', not 'alice'" in error


def test_tls_key_readable_by_others(local: Path, configs: Path, tmp_path: Path) -> None:
    key = tmp_path / "alice.key"
    shutil.copy(local / "certs" / "alice.key", key)
    key.chmod(0o640)
    use_certificate(configs, local / "certs" / "alice.pem", key)
    error = one_error(configs)
    assert f"{key}: TLS private key is accessible by group/others (mode 0640)" in error


def test_certificate_of_another_ca(configs: Path, tmp_path: Path) -> None:
    make_ca(tmp_path / "other")
    cert = signed_for(tmp_path / "other", tmp_path, days=30)
    use_certificate(configs, cert, tmp_path / "tls" / "alice.key")
    error = one_error(configs)
    assert f"{cert}: not signed by the network's CA" in error


def test_certificate_without_the_host_peers_use(local: Path, configs: Path, tmp_path: Path) -> None:
    cert = signed_for(local / "certs", tmp_path, days=30, hosts=["alice.bank.example"])
    use_certificate(configs, cert, tmp_path / "tls" / "alice.key")
    error = one_error(configs)
    assert f"{cert}: peers reach alice at 127.0.0.1" in error
    assert error.endswith("but the certificate names alice, alice.bank.example")


def test_own_pinned_certificate_differs(local: Path, configs: Path) -> None:
    def pin(data: dict[str, Any]) -> None:
        data["parties"][0]["certificate"] = str(local / "certs" / "bob.pem")

    edit(configs / "network.yaml", pin)
    error = one_error(configs)
    assert "network.yaml: parties[0].certificate:" in error and "peers would refuse" in error


def test_bad_cron_expression(configs: Path) -> None:
    edit(configs / "alice.yaml", lambda d: d.update(schedule={"cron": "0 25 * * *"}))
    error = one_error(configs)
    assert "alice.yaml: schedule.cron: '0 25 * * *'" in error


def test_admin_token_missing_or_readable_by_others(configs: Path) -> None:
    admin = {"host": "0.0.0.0", "token_file": "admin.token"}
    edit(configs / "alice.yaml", lambda d: d.update(admin=admin))
    error = one_error(configs)
    assert "alice.yaml: admin.token_file: file not found" in error
    token = configs / "admin.token"
    token.write_text("s3cret\n")
    token.chmod(0o644)
    error = one_error(configs)
    assert f"{token}: admin token file is accessible by group/others (mode 0644)" in error
    token.chmod(0o600)
    error = one_error(configs)  # shorter than the service accepts
    assert f"{token}: the admin token must have 16 characters or more (it has 6)" in error
    token.write_text("s3cret-s3cret-s3cret\n")
    code, lines = check(configs, "--no-network")
    assert code == 0 and any(f"bearer token in {token}" in ln for ln in lines), lines


def test_output_not_writable(configs: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output directory should be\n")
    error = one_error(configs, "--out", str(blocker))
    assert f"{blocker}: the output path is a file" in error


def test_data_of_the_schedule_slot(local: Path, configs: Path, tmp_path: Path) -> None:
    """With a data template the latest slot's directory is the one checked."""
    template = str(tmp_path / "snapshots" / "{date}")
    schedule = {"cron": "0 2 * * *", "run_id": "daily-{date}", "data": template}
    edit(configs / "alice.yaml", lambda d: d.update(schedule=schedule))
    now = datetime.datetime.now(datetime.UTC)  # certificates are valid now, not at any time
    slot = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if slot > now:
        slot -= datetime.timedelta(days=1)
    date = slot.strftime("%Y-%m-%d")

    def lines() -> list[str]:
        report = check_node(configs, "alice", network=False, now=now)
        return [str(finding) for finding in report.findings]

    [error] = [ln for ln in lines() if ln.startswith("error: ")]
    assert f"alice.yaml: schedule.data (slot {date} 02:00 UTC): directory not found" in error
    assert error.endswith(str(tmp_path / "snapshots" / date))
    shutil.copytree(local / "data" / "alice", tmp_path / "snapshots" / date)
    found = lines()
    assert not [ln for ln in found if not ln.startswith("ok: ")], found
    assert f"ok: data {tmp_path / 'snapshots' / date}: " in "\n".join(found)
    following = (slot + datetime.timedelta(days=1)).strftime("%Y-%m-%d")
    assert (
        f"ok: schedule '0 2 * * *' (UTC): latest slot {date} 02:00 UTC "
        f"(run daily-{date}), next {following} 02:00 UTC"
    ) in found


def test_no_configuration_is_one_line(tmp_path: Path) -> None:
    code, lines = check(tmp_path)
    assert code == 1 and len(lines) == 2
    assert lines[0] == f"error: {tmp_path / 'alice.yaml'}: configuration file not found"


# -------------------------------------------------------------------- a peer's node


@contextmanager
def listening(configs: Path, player: str) -> Iterator[None]:
    """``player``'s peer listener, as a service node keeps it between runs (run id "")."""
    settings = http_settings(load_player_config(configs, player).for_run(""))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> HttpTransport:
        transport = HttpTransport(settings)
        await transport.start()
        return transport

    try:
        transport = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
        try:
            yield
        finally:
            asyncio.run_coroutine_threadsafe(transport.close(), loop).result(60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


def test_a_streaming_node_is_checked_for_its_stream(configs: Path, tmp_path: Path) -> None:
    """The stream replaces the data directory; a store of other periods is an error; the
    broker is pinged (a warning while it is down, ok once it answers)."""

    from stream.brokers import redis_broker

    from riskprop.stream.store import PeriodStore

    closed_port = free_ports(1)[0]  # a port nothing listens on
    store = tmp_path / "store.db"
    stream = {
        "broker": "redis",
        "address": f"redis://127.0.0.1:{closed_port}/0",
        "topic": "tx.alice",
        "store": str(store),
    }

    def streaming(data: dict[str, Any]) -> None:
        data["stream"] = dict(stream)
        data["data"] = str(tmp_path / "no-such-directory")  # not read by a streaming node

    edit(configs / "alice.yaml", streaming)
    code, lines = check(configs, "--no-network")
    assert code == 0, lines
    assert any(ln.startswith("ok: stream redis redis://127.0.0.1:") for ln in lines)
    assert f"ok: stream store {store}: made at the node's first start" in lines
    assert not any(ln.startswith("ok: data ") for ln in lines)
    code, lines = check(configs)
    assert next(ln for ln in level(lines, "warning") if "stream" in ln).startswith(
        f"warning: stream broker redis://127.0.0.1:{closed_port}/0: not reachable (ConnectionError"
    )
    PeriodStore(store, origin=0, length=3600).close()
    error = one_error(configs)
    assert error == (
        f"error: {configs / 'alice.yaml'}: stream: the store {store} keeps periods of 3600 s from"
        " 0, not 86400 s from 0: use a new store for other periods"
    )
    store.unlink()
    PeriodStore(store, origin=0, length=86400).close()
    with redis_broker(tmp_path / "redis") as broker:
        stream["address"] = f"redis://127.0.0.1:{broker.address}/0"
        edit(configs / "alice.yaml", streaming)
        code, lines = check(configs)
        assert f"ok: stream broker {stream['address']}: reachable" in lines
        assert f"ok: stream store {store}: 0 transactions" in lines


def test_which_code_runs_the_arithmetic(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel, the portable path (mpn for key shares) or gmpy2 alone; a module that was
    not built is a warning naming what its build needs, never an error."""
    from riskprop.core import modexp

    monkeypatch.delenv(modexp.ENVIRONMENT, raising=False)
    code, lines = check(configs, "--no-network")
    expected = (
        "ok: arithmetic: the AVX-512 IFMA kernel (exponentiations and iterations)"
        if modexp.native()
        else "ok: arithmetic: GMP mpn for key shares (constant time), gmpy2 for the rest"
    )
    assert expected in lines
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmp")
    code, lines = check(configs, "--no-network")
    assert code == 0 and not level(lines, "warning"), lines
    assert (
        "ok: arithmetic: GMP mpn for key shares (constant time), gmpy2 for the rest (forced by "
        "RISKPROP_ARITHMETIC=gmp)"
    ) in lines
    monkeypatch.setenv(modexp.ENVIRONMENT, "gmpy2")
    code, lines = check(configs, "--no-network")
    assert "ok: arithmetic: gmpy2 (forced by RISKPROP_ARITHMETIC=gmpy2)" in lines
    # neither module built, on a CPU with IFMA: two warnings, the run still checks out
    monkeypatch.delenv(modexp.ENVIRONMENT)
    monkeypatch.setattr(modexp, "_KERNEL", None)
    monkeypatch.setattr(modexp, "_MPN", None)
    monkeypatch.setattr(modexp, "cpu_has_ifma", lambda: True)
    code, lines = check(configs, "--no-network")
    assert code == 0, lines
    kernel, mpn = level(lines, "warning")
    assert kernel.startswith("warning: arithmetic: this CPU has AVX-512 IFMA but riskprop's kernel")
    assert "C compiler and the Python headers" in kernel
    assert mpn.startswith("warning: arithmetic: riskprop.core._mpn was not built")
    assert "libgmp.so.10" in mpn


def test_where_the_node_computes(configs: Path) -> None:
    """Its worker processes (and whether the key share goes to them), more than the cores a
    warning; a Dask scheduler connected to as a run connects, or one line when it cannot be."""
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 1}))
    code, lines = check(configs, "--no-network")
    assert "ok: compute: in the node process (compute.workers: 1)" in lines
    edit(configs / "alice.yaml", lambda d: d.update(compute={"workers": 2}))
    code, lines = check(configs, "--no-network")
    assert (
        "ok: compute: 2 worker processes on this host (large noise draws there; the key share "
        "stays in the node process)"
    ) in lines
    shared = {"workers": 10_000, "share_in_workers": True}
    edit(configs / "alice.yaml", lambda d: d.update(compute=shared))
    code, lines = check(configs, "--no-network")
    assert code == 0, lines
    assert (
        "ok: compute: 10000 worker processes on this host (large noise draws there; the key share "
        "too (compute.share_in_workers))"
    ) in lines
    (warning,) = level(lines, "warning")
    assert warning.startswith(f"warning: {configs / 'alice.yaml'}: compute.workers: 10000 ")
    closed = "tcp://127.0.0.1:9"
    edit(configs / "alice.yaml", lambda d: d.update(compute={"dask": closed}))
    code, lines = check(configs, "--no-network")
    assert f"ok: compute: Dask scheduler {closed} (not contacted: --no-network)" in lines
    code, lines = check(configs, "--timeout", "1")
    (error,) = level(lines, "error")
    assert code == 1 and error.startswith(
        f"error: {configs / 'alice.yaml'}: compute.dask: cannot reach the Dask scheduler at "
        f"{closed} within 1 s"
    ), lines


def test_a_reachable_dask_scheduler_is_ok(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    # the scheduler runs in this process here (at a bank, on its own host): its log is not
    # the check's output
    monkeypatch.setattr(logging.getLogger("distributed"), "level", logging.WARNING)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",  # a network address, as a node is given, with the workers in-process
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        address = cluster.scheduler_address
        edit(configs / "alice.yaml", lambda d: d.update(compute={"dask": address}))
        _, lines = check(configs)
    assert f"ok: compute: Dask scheduler {address}: 2 worker thread(s)" in lines, lines
    assert not level(lines, "error"), lines
