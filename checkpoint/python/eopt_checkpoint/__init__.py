"""eopt checkpoints from and to PyTorch (layout: shared/spec/checkpoint.md).

PyTorch -> eopt:  eopt_checkpoint.save("run.h5", model, {"0": opt}, step=100)
eopt -> PyTorch:  ck = eopt_checkpoint.load("run.h5", model, {"0": opt})
Records without torch objects: eopt_checkpoint.read / write, Checkpoint, OptimizerRecord.
"""
from .compare import diff
from .layout import FORMAT, FORMAT_VERSION, Checkpoint, CheckpointError, OptimizerRecord, read, write
from .optimizers import constructor_args, default_source
from .torch_io import ArgumentMismatchWarning, build_optimizer, load, optimizer_state_dict, record, save
from .trajectory import TrajectoryWriter

__all__ = ["FORMAT", "FORMAT_VERSION", "Checkpoint", "CheckpointError", "OptimizerRecord", "read", "write", "diff",
           "constructor_args", "default_source", "save", "load", "record", "optimizer_state_dict",
           "build_optimizer", "TrajectoryWriter", "ArgumentMismatchWarning"]
