"""Trajectory files in the fixtures' format (shared/fixtures/README.md): the gradients fed at
steps 1..N and the parameters after each, so that another implementation (`eopt replay`) can
continue a run from a checkpoint and be checked step by step."""
import h5py
import numpy as np
import torch


def _arr(t):
    return t.detach().cpu().float().contiguous().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)


class TrajectoryWriter:
    """with TrajectoryWriter(path, init=named tensors, **attrs) as tw: tw.add(t, grads, params).
    attrs: case, class, source, steps, checkpoint_steps, noise_sensitivity, tolerance."""

    def __init__(self, path, init, **attrs):
        self.f = h5py.File(path, "w")
        for k, v in attrs.items():
            if isinstance(v, str):
                self.f.attrs.create(k, v, dtype=h5py.string_dtype("utf-8"))
            elif isinstance(v, (list, tuple)):
                self.f.attrs[k] = np.asarray(v, dtype=np.int64)
            elif isinstance(v, int):
                self.f.attrs[k] = np.int64(v)
            else:
                self.f.attrs[k] = np.float64(v)
        self._group("init", init)

    def _group(self, name, tensors):
        g = self.f.create_group(name)
        for k, t in tensors.items():
            g.create_dataset(k, data=_arr(t))

    def add(self, t, grads, params):
        """Step t (1-based): the gradient fed and the parameters after it, by name."""
        self._group("grads/%d" % t, grads)
        self._group("params/%d" % t, params)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
