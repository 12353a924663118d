"""`notifier parti` and `notifier sim` as a user runs them: real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys

from notifier.parti.simulator import Simulator


async def run_notifier(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NOTIFIER_LOG_FORMAT": "json", **(env or {})},
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def sim_env(sim: Simulator) -> dict[str, str]:
    return {"NOTIFIER_PARTI_API_URL": sim.api_url, "NOTIFIER_PARTI_WS_URL": sim.ws_url}


async def test_parti_live_prints_the_demo_channels(sim: Simulator) -> None:
    code, out, _ = await run_notifier("parti", "live", "--limit", "3", env=sim_env(sim))
    assert code == 0
    assert [c["user_name"] for c in json.loads(out)] == ["DBR", "BalthierGR", "Sourfarmer"]


async def test_parti_recent_with_category_and_top_views(sim: Simulator) -> None:
    code, out, _ = await run_notifier(
        "parti", "recent", "--category", "10", "--top-views", env=sim_env(sim)
    )
    assert code == 0
    assert [r["total_viewers"] for r in json.loads(out)] == [36, 34, 30]


async def test_parti_profile_of_unknown_user_fails_with_the_route_and_status(
    sim: Simulator,
) -> None:
    code, out, err = await run_notifier("parti", "profile", "999", env=sim_env(sim))
    assert code == 1 and out == ""
    assert "/user_profile/999 -> 404" in err


async def test_parti_profile_needs_a_numeric_id(sim: Simulator) -> None:
    code, _, err = await run_notifier("parti", "profile", "sneako", env=sim_env(sim))
    assert code == 2
    assert "must be a number" in err


async def test_parti_watch_prints_events_as_they_arrive(sim: Simulator) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "parti",
        "watch",
        "--count",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **sim_env(sim)},
    )
    await sim.wait_subscribed("NewChannelLiveNotify")
    await sim.wait_subscribed("AssetPriceRefreshNotify")
    await sim.go_live(463000, event_title="hello")
    await sim.set_price("BTC", "99999.5")
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 0
    assert [(x["type"], x.get("user_name") or x.get("display_symbol")) for x in lines] == [
        ("live", "SNEAKO"),
        ("price", "BTC"),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_notifier_sim_serves_the_routes_until_stopped() -> None:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notifier",
        "sim",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            banner = await proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner.decode()
        url = f"http://127.0.0.1:{port}"
        code, out, _ = await run_notifier("parti", "featured", env={"NOTIFIER_PARTI_API_URL": url})
        assert code == 0 and json.loads(out)[0]["user_name"] == "SNEAKO"
    finally:
        proc.terminate()
        await proc.wait()


async def test_notifier_sim_on_a_port_taken_or_out_of_range_is_one_line_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, err = await run_notifier("sim", "--port", str(port))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(
        f"notifier sim: cannot listen on 127.0.0.1:{port}"
    )
    assert "in use" in err and "Traceback" not in err
    code, _, err = await run_notifier("sim", "--port", "99999")
    assert code == 2 and "a port is a number from 0 to 65535, not '99999'" in err
    assert "Traceback" not in err


def test_a_closed_output_pipe_ends_quietly_as_sigpipe_would() -> None:
    # `notifier sim | true`: the reader is gone before the first line is written.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "notifier", "sim", "--port", "0"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NOTIFIER_LOG_FORMAT": "json"},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141, done.stderr
    assert "internal error" not in done.stderr and "cannot listen" not in done.stderr


def test_only_our_own_output_gone_counts_as_a_closed_pipe() -> None:
    # A BrokenPipeError from anything else (a peer inside `notifier run`) is a crash,
    # reported as one, not a quiet exit 141.
    from notifier.cli import _output_gone

    for reader_closed in (True, False):
        read, write = os.pipe()
        saved = os.dup(sys.stdout.fileno())
        try:
            if reader_closed:
                os.close(read)
            sys.stdout.flush()
            os.dup2(write, sys.stdout.fileno())
            gone = _output_gone()
        finally:
            os.dup2(saved, sys.stdout.fileno())
            os.close(saved)
            os.close(write)
            if not reader_closed:
                os.close(read)
        assert gone is reader_closed
