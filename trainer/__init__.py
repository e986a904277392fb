"""trainer: RamanNet in PyTorch, training, evaluation protocols, baselines and explanations (workstation side)."""

from trainer.checkpoint import RunInfo, load_run, save_run
from trainer.model import RamanNet, RamanNetConfig, window_starts

__all__ = ["RamanNet", "RamanNetConfig", "RunInfo", "load_run", "save_run", "window_starts"]
