"""``python -m trainer train ...``: training under ``torchrun`` with DistributedDataParallel.

    torchrun --standalone --nproc-per-node 2 -m trainer train --data DATA --out RUN [train options]

Each process reads the data, takes its share of every global batch (``--batch-size`` spectra in all), and
gradients are averaged (DDP); rank 0 alone writes RUN. The backend is gloo on CPU (nccl when CUDA is there),
or ``--backend``. Run without torchrun, it trains in one process exactly like ``ramanedge train``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from spectral_core.errors import RamanEdgeError
from trainer.cli import configure_train, run_train

__all__ = ["main"]

logger = logging.getLogger("trainer")

#: how long a rank that finished waits for the others (rank 0 still writes the run and its plots), s
BARRIER_TIMEOUT_S = 300


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train RamanNet (DistributedDataParallel under torchrun)")
    configure_train(p)
    p.add_argument("--backend", choices=["gloo", "nccl"], help="torch.distributed backend (default: gloo on CPU)")
    args = parser.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    import torch
    import torch.distributed as dist

    if world > 1:
        backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend=backend)
        logger.info("DistributedDataParallel: %d processes, backend %s", world, backend)
    if rank != 0:
        args.quiet = True
    try:
        return run_train(args)
    except RamanEdgeError as exc:
        sys.stderr.write(f"python -m trainer train (rank {rank}): error: {exc}\n")
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            _leave_together(dist)
            dist.destroy_process_group()


def _leave_together(dist: Any) -> None:
    """Wait until every rank is done before any tears the group down: rank 0 still saves the run after the
    others return, and a rank that destroyed its gloo group while another still held it was aborted by
    the C++ runtime ("terminate called without an active exception"). Bounded: a rank that died or failed
    is reported, never waited for forever."""
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=BARRIER_TIMEOUT_S))
        else:
            dist.barrier()
    except RuntimeError as exc:  # another rank failed or left: nothing to wait for
        logger.warning("ranks did not all finish together: %s", str(exc).splitlines()[0] if str(exc) else exc)


if __name__ == "__main__":
    sys.exit(main())
