"""The soak harness (benchmarks/bench_soak.py, benchmarks/_soak_load.py): its status rules, its memory
verdict, a run against a fake server whose wrong answers must fail it, and a short real run against
``jwtkit serve`` (a few seconds at a low rate), so that the harness cannot rot."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from processes import free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside src/, not in it

load = importlib.import_module("benchmarks._soak_load")
soak = importlib.import_module("benchmarks.bench_soak")


def test_each_kind_expects_exactly_its_statuses() -> None:
    assert {kind: set(statuses) for kind, statuses in load.EXPECTED.items()} == {
        "login": {200}, "private": {200}, "refresh": {200}, "logout": {204}, "bad": {401}}
    for kind in load.KINDS:
        allowed = [s for s in range(600) if load.is_expected(kind, s)]
        assert allowed == sorted(load.EXPECTED[kind])
    # the pseudo-statuses of no answer and of a 200 without a token pair are never expected
    assert not any(load.is_expected(k, s) for k in load.KINDS for s in (load.NO_ANSWER, load.BAD_BODY))


def test_unexpected_picks_out_the_wrong_answers() -> None:
    statuses = {"private": {200: 5, 500: 1}, "bad": {401: 3, 200: 1}, "logout": {204: 2, 200: 0},
                "login": {429: 2}, "refresh": {}}
    assert load.unexpected(statuses) == {"private": {500: 1}, "bad": {200: 1}, "login": {429: 2}}
    assert load.unexpected({"private": {200: 9}, "logout": {204: 1}, "bad": {401: 4}}) == {}


def test_failures_name_each_phase_and_kind() -> None:
    clean = {"max": {"unexpected": {}}, "paced": {"unexpected": {}},
             "rss": {"within": True, "growth_mib": 1.0, "bound_mib": 32.0}}
    assert soak.failures_of(clean) == []
    dirty = {**clean, "paced": {"unexpected": {"bad": {"200": 3}}}}
    assert soak.failures_of(dirty) == ["paced: unexpected answers to bad: 3 x 200"]
    grown = {**clean, "rss": {"within": False, "growth_mib": 40.5, "bound_mib": 32.0}}
    assert soak.failures_of(grown) == [
        "the server's RSS grew 40.5 MiB after warm-up, past the bound of 32 MiB"]


def test_main_exits_1_when_the_run_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(soak, "report", lambda result: "report")
    for failures, code in ((["paced: unexpected answers to bad: 1 x 200"], 1), ([], None)):
        monkeypatch.setattr(soak, "run", lambda options, f=failures: {"failures": f})
        if code is None:
            soak.main(["--duration=1"])
        else:
            with pytest.raises(SystemExit) as raised:
                soak.main(["--duration=1"])
            assert raised.value.code == code
    with pytest.raises(SystemExit, match="no option --durration"):
        soak.options_from(["--durration=5"])
    assert soak.options_from(["--store", "redis", "--rate=10"])["store"] == "redis"


def _samples(kib: list[int], *, every: float = 5.0) -> list[object]:
    return [soak.Sample(at=i * every, phase="paced", tree_kib=k, worker_kib=k, processes=3)
            for i, k in enumerate(kib)]


def test_rss_growth_is_the_highest_level_after_warm_up() -> None:
    mib = 1024
    # samples every 5 s; warm-up 30 s; levels are medians of 30 s windows
    warm = [100, 150, 200, 200, 200, 201, 199]  # 0-30 s: the baseline is the median of 5-30 s, 200
    spike = [200, 219, 200, 200, 200, 200]  # 35-60 s: one sample during a hash
    step = [233, 233, 233, 233, 253, 233]  # 65-90 s: a step of 33 MiB
    flat = soak.rss_verdict(_samples([m * mib for m in warm + spike]), 0.0, 30.0, bound_mib=32.0, window=30.0)
    assert (flat["baseline_kib"], flat["levels_kib"], flat["peak_kib"]) == (200 * mib, [200 * mib], 219 * mib)
    assert (flat["growth_mib"], flat["within"]) == (0.0, True)
    grown = soak.rss_verdict(_samples([m * mib for m in warm + spike + step]), 0.0, 30.0, bound_mib=32.0,
                             window=30.0)
    assert grown["levels_kib"] == [200 * mib, 233 * mib]
    assert (grown["growth_mib"], grown["within"]) == (33.0, False)
    assert soak.rss_verdict(_samples([m * mib for m in warm + spike + step]), 0.0, 30.0, bound_mib=33.0,
                            window=30.0)["within"]
    # a last sample after the last whole window joins it, so one high sample at the end is not a level
    tail = soak.rss_verdict(_samples([m * mib for m in [*warm, *spike, 250]]), 0.0, 30.0, bound_mib=32.0,
                            window=30.0)
    assert (tail["levels_kib"], tail["peak_kib"], tail["growth_mib"]) == ([200 * mib], 250 * mib, 0.0)
    # less than one whole window after warm-up: not judged, whatever it shows
    short = soak.rss_verdict(_samples([m * mib for m in [*warm, 300, 300]]), 0.0, 30.0, bound_mib=32.0,
                             window=30.0)
    assert (short["growth_mib"], short["judged"], short["within"]) == (100.0, False, True)
    assert flat["judged"] and grown["judged"] and tail["judged"]


def test_the_kind_cycle_has_the_mix_and_spreads_it() -> None:
    cycle = load.kind_cycle(load.MIX)
    assert Counter(cycle) == dict(load.MIX)
    logins = [i for i, kind in enumerate(cycle) if kind == "login"]
    gaps = [b - a for a, b in itertools.pairwise([*logins, logins[0] + len(cycle)])]
    assert max(gaps) - min(gaps) <= 1  # evenly spread: one login every 200 requests


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [load.percentile(values, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert load.percentile([7.0], 99) == 7.0


# --- a run against a fake server ---------------------------------------------------------------------------

def _token(claims: dict[str, object]) -> str:
    def b64(data: dict[str, object]) -> str:
        return load._b64(json.dumps(data).encode())

    return f"{b64({'alg': 'HS256', 'typ': 'at+jwt'})}.{b64(claims)}.c2ln"


PAIR = json.dumps({"access_token": _token({"sub": "u", "sid": "new"}), "refresh_token": "r",
                   "expires_in": 900}).encode()


async def _fake_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """200 with a token pair to everything but /refresh, whose connection it closes without an answer."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            if head.startswith(b"POST /refresh "):
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(PAIR)).encode() + b"\r\n\r\n" + PAIR)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def test_wrong_answers_and_lost_connections_are_unexpected() -> None:
    port = free_port()
    server = await asyncio.start_server(_fake_server, "127.0.0.1", port)
    client = load.Client(port)
    workload = load.Workload(client, [("user-0", "pw"), ("user-1", "pw")], b"k" * 32)
    for i in range(64):
        token = _token({"sub": f"u{i}", "sid": f"s{i}", "exp": 2**40})
        workload.idle.append(load.Session(token, f"r{i}", i % 2, time.monotonic(), 900.0))
        workload.live[i % 2] += 1
    rate, duration = 400.0, 1.0
    try:
        paced = await load.open_loop(workload, itertools.cycle(load.kind_cycle(load.MIX)), rate=rate,
                                     duration=duration, connections=8)
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    sent = Counter(load.kind_cycle(load.MIX)[: int(rate * duration)])
    statuses = {kind: dict(counts) for kind, counts in paced.recorder.statuses.items()}
    assert statuses == {"login": {200: sent["login"]}, "private": {200: sent["private"]},
                        "refresh": {load.NO_ANSWER: sent["refresh"]}, "logout": {200: sent["logout"]},
                        "bad": {200: sent["bad"]}}
    assert load.unexpected(statuses) == {"refresh": {0: sent["refresh"]}, "logout": {200: sent["logout"]},
                                         "bad": {200: sent["bad"]}}
    phase = soak._phase_json(paced.recorder, duration)
    assert soak.failures_of({"paced": phase}) == [
        f"paced: unexpected answers to refresh: {sent['refresh']} x 0",
        f"paced: unexpected answers to logout: {sent['logout']} x 200",
        f"paced: unexpected answers to bad: {sent['bad']} x 200"]


async def _slow_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers each request 20 ms after it came, one at a time."""
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def test_paced_latency_counts_the_wait_behind_a_slow_server() -> None:
    """No coordinated omission: at 100 req/s on one connection to a server that takes 20 ms a request,
    request i is due at 10i ms and answered at about 20(i+1) ms, so its latency is about 10i + 20 ms."""
    port = free_port()
    server = await asyncio.start_server(_slow_server, "127.0.0.1", port)
    client = load.Client(port)
    workload = load.Workload(client, [("user-0", "pw")], b"k" * 32)
    workload.idle += [load.Session(_token({"sid": str(i)}), "r", 0, time.monotonic(), 900.0)
                      for i in range(4)]
    try:
        paced = await load.open_loop(workload, itertools.repeat("private"), rate=100.0, duration=0.5,
                                     connections=1)
    finally:
        client.close()
        server.close()
        await server.wait_closed()
    latencies = list(paced.recorder.latencies["private"])
    assert len(latencies) == 50
    assert min(latencies) >= 0.019
    assert latencies[-1] >= 0.45  # about 510 ms; only the 20 ms of service time if the wait were left out
    assert latencies[-1] - latencies[0] >= 0.4
    assert max(paced.send_lag) >= 0.45  # the last request was written about half a second after it was due


# --- a short real run --------------------------------------------------------------------------------------

def test_a_short_soak_of_jwtkit_serve_passes(tmp_path: Path) -> None:
    require_binary("taskset")
    out = tmp_path / "soak.json"
    rate, duration = 150, 3
    done = subprocess.run([sys.executable, "-m", "benchmarks", "soak", f"--duration={duration}",
                           f"--rate={rate}", "--users=8", "--sessions=32", f"--json={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "soak passed" in done.stdout
    result = json.loads(out.read_text())
    assert result["failures"] == []
    assert "max" not in result  # --rate given: no phase 1
    paced = result["paced"]
    sent = Counter(load.kind_cycle(load.MIX)[: rate * duration])
    assert {kind: sum(counts.values()) for kind, counts in paced["statuses"].items()} == sent
    assert all(sent[kind] > 0 for kind in load.KINDS)
    assert paced["unexpected"] == {}
    assert {kind: set(counts) for kind, counts in paced["statuses"].items()} == {
        "login": {"200"}, "private": {"200"}, "refresh": {"200"}, "logout": {"204"}, "bad": {"401"}}
    assert set(result["variants"]) == set(load.BAD_VARIANTS)
    assert result["rss"]["baseline_kib"] > 0
    assert (result["rss"]["judged"], result["rss"]["within"]) == (False, True)  # 3 s: no whole 30 s window
