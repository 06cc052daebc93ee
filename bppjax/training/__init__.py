"""Training: configs, the jitted step, the resumable loop (``train_and_evaluate``)."""

from bppjax.training.config import ConfigError, base_config, default_config, load_config_file, validate_config
from bppjax.training.loop import CheckpointWriteError, NonFiniteLossError, TrainResult, train_and_evaluate
from bppjax.training.state import TrainState, create_train_state, make_optimizer, make_schedule
from bppjax.training.step import train_step

__all__ = [
    "CheckpointWriteError", "ConfigError", "NonFiniteLossError", "TrainResult", "TrainState", "base_config", "create_train_state",
    "default_config", "load_config_file", "make_optimizer", "make_schedule", "train_and_evaluate", "train_step",
    "validate_config",
]
