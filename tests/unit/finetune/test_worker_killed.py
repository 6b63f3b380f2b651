"""A fine-tuning worker killed with SIGKILL while its job runs (the OOM killer's choice,
an operator's ``kill -9``), with the stand-in worker (``stand_in_worker``, a test double)
and the real runner, registry and store: the job fails, what the worker left in the store
goes, the registered versions stay, and the runner goes on with the next job. (That the
worker dies with a killed gateway is ``test_worker.py``'s.)"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.unit.finetune.test_runner import Setup


async def test_a_worker_killed_mid_job_fails_its_job_and_leaves_the_store_intact(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path)
    setup.runner.start()
    try:
        record = setup.submit("hang")  # leaves a staging folder, then trains on
        await setup.stepped(record)
        waiting = setup.submit("ok")
        running = setup.runner.running[record["id"]]
        assert running.process is not None and setup.leftovers(record)  # mid-job
        os.kill(running.process.pid, signal.SIGKILL)
        done = await setup.ended(record)
        assert done["status"] == "failed" and done["error"]["code"] == "training_error"
        assert f"status {-signal.SIGKILL}" in done["error"]["message"]
        assert setup.leftovers(record) == []
        assert setup.registry.current_of("acme-intents") == "v1"  # untouched
        assert (setup.store / "acme-intents" / "v1" / "adapter_config.json").is_file()
        assert (await setup.ended(waiting))["status"] == "succeeded"  # the queue goes on
    finally:
        await asyncio.wait_for(setup.runner.stop(), 30)
