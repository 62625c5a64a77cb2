"""`make demo`: start a grid on this machine, run HTC-Grid's example client against it, print
results and throughput, stop the grid. Everything lives in a temporary folder."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOCK = ROOT / "examples" / "workloads" / "mock_computation"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, input=stdin, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"demo step failed: {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="htcgrid-demo-") as tmp:
        step(
            "htcgrid up: API, TTL checker and one agent with 2 worker processes, on SQLite + files"
        )
        grid = subprocess.Popen(
            [sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", f"{tmp}/grid",
             "--slots", "2", "--path", str(MOCK), "--handler", "mock_compute_engine.lambda_handler"],
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "HTCGRID_CONFIG_DIR": f"{tmp}/config"},  # leave no record behind
        )  # fmt: skip
        assert grid.stdout is not None
        url = grid.stdout.readline().strip()
        print(f"grid API at {url}")
        api_key = json.loads(Path(tmp, "grid", "admin-credentials.json").read_text())["api_key"]
        os.environ["HTCGRID_TOKEN"] = api_key  # the admin's key, for the CLI steps below
        try:
            htcgrid = [sys.executable, "-m", "htcgrid"]
            step("htcgrid submit --wait: three mock tasks (sleep 100, 200, 300 ms)")
            tasks = "\n".join(
                json.dumps({"worker_arguments": [ms, "1", "1"]}) for ms in ("100", "200", "300")
            )
            print(run(*htcgrid, "submit", "-", "--url", url, "--wait", stdin=tasks), end="")

            step(
                "HTC-Grid's examples/client/client.py: 5 sessions x 2,000 no-op tasks, every output verified"
            )
            config = Path(tmp) / "agent_config.json"
            config.write_text(json.dumps({"htcgrid_url": url, "api_gateway_key": api_key}))
            env = {**os.environ, "AGENT_CONFIG_FILE": str(config)}
            print(run(sys.executable, "examples/client/client.py", "-n", "1", "--job_size", "2000",
                      "--job_batch_size", "5", "--worker_arguments", "0 1 1", env=env), end="")  # fmt: skip

            step(
                "htcgrid deploy: HTC-Grid's QuantLib pricer, packaged by its recipe (pip install --target)"
            )
            package = Path(tmp) / "pricer"
            shutil.copytree(ROOT / "examples" / "workloads" / "quant_lib", package,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
            quantlib = f"QuantLib=={importlib.metadata.version('QuantLib')}"
            run(
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(package),
                quantlib,
            )
            print(run(*htcgrid, "deploy", "pricing", str(package), "--handler",
                      "portfolio_pricing_engine.lambda_handler", "--url", f"sqlite://{tmp}/grid/grid.db",
                      "--data-url", f"file://{tmp}/grid/blobs"), end="")  # fmt: skip

            step(
                "examples/client/portfolio_pricing_client.py: 48 random trades of the sample, 4 per task"
            )
            config.write_text(
                json.dumps({**json.loads(config.read_text()), "htcgrid_function": "pricing"})
            )
            print(run(sys.executable, "examples/client/portfolio_pricing_client.py", "--workload_type",
                      "random_portfolio", "--portfolio_size", "48", "--trades_per_worker", "4",
                      env=env), end="")  # fmt: skip

            step("htcgrid sessions")
            print(run(*htcgrid, "sessions", "--url", url, "--limit", "10"), end="")
        finally:
            grid.terminate()
            grid.wait(timeout=60)
    print("\ndemo done: the grid is stopped.")


if __name__ == "__main__":
    main()
