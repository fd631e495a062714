"""The eopt checkpoint file (shared/spec/checkpoint.md) as plain Python records.

`write` and `read` know the HDF5 layout and its type rules and nothing about torch modules or
optimizer classes: a Checkpoint holds a model state dict, and per optimizer its class,
constructor arguments and torch `state_dict()`. Reading validates the whole file before it
returns anything; every error names the file, the HDF5 path and the offending value.
"""
import os
from collections import OrderedDict

import h5py
import numpy as np
import torch

FORMAT = "eopt-checkpoint"
FORMAT_VERSION = 1

_STR = h5py.string_dtype("utf-8")


class CheckpointError(ValueError):
    """A file that is not a valid eopt checkpoint; the message names file, HDF5 path and value."""

    def __init__(self, path, where, what):
        super().__init__("%s:%s: %s" % (path, where, what))
        self.path, self.where = path, where


class OptimizerRecord:
    """One /optimizers/<name> group: `cls` (the class attribute), `args` (constructor arguments
    that torch's state_dict omits), `state_dict` (torch's {"state", "param_groups"}),
    `param_names` (model name of each state index), `source` and an optional `schedule` dict."""

    def __init__(self, cls, state_dict, param_names, args=None, source=None, schedule=None):
        self.cls = cls
        self.state_dict = state_dict
        self.param_names = list(param_names)
        self.args = OrderedDict(args or {})
        self.source = source
        self.schedule = schedule

    def __repr__(self):
        return "OptimizerRecord(%s, args=%r, %d params, %d groups)" % (
            self.cls, dict(self.args), len(self.param_names), len(self.state_dict["param_groups"]))


class Checkpoint:
    """A whole file: `model` maps names to tensors (tied names share one tensor object),
    `optimizers` maps names to OptimizerRecords; `trainer` and `trainer_data` carry the C
    trainer's /trainer attributes and datasets through a round trip untouched; `config` is the
    root attribute in which the C trainer records the run's resolved config ("" if absent)."""

    def __init__(self, step, model, optimizers, producer="", trainer=None, trainer_data=None, config=""):
        self.step = int(step)
        self.model = OrderedDict(model)
        self.optimizers = OrderedDict(optimizers)
        self.producer = producer
        self.trainer = trainer
        self.trainer_data = trainer_data
        self.config = config


# ---------------------------------------------------------------------------------------------
# Python values <-> HDF5 attributes and datasets (the type rules of checkpoint.md)

def _attr_value(value, where, key):
    """A Python value as the array h5py stores: bool -> int8, int -> int64, float -> float64,
    str -> vlen UTF-8, tuple of numbers -> float64 array. None is handled by the caller."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return np.int8(1 if value else 0)
    if isinstance(value, (int, np.integer)):
        return np.int64(value)
    if isinstance(value, (float, np.floating)):
        return np.float64(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)) and value and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value):
        return np.asarray(value, dtype=np.float64)
    raise TypeError("%s: attribute %r = %r has no checkpoint type" % (where, key, value))


def _write_attrs(obj, values, where):
    for key, value in values.items():
        if value is None:
            continue
        v = _attr_value(value, where, key)
        if isinstance(v, str):
            obj.attrs.create(key, v, dtype=_STR)
        else:
            obj.attrs[key] = v


def _read_attr(obj, key, path, where):
    value = obj.attrs[key]
    dt = obj.attrs.get_id(key).dtype
    if h5py.check_string_dtype(dt) is not None:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if dt.kind == "b" or (h5py.check_enum_dtype(dt) is not None and dt.kind in "iu"):
        return bool(value)  # h5py's boolean enum
    arr = np.asarray(value)
    if arr.ndim == 0:
        if dt.kind in "iu":
            return bool(arr) if dt.itemsize == 1 else int(arr)
        if dt.kind == "f":
            return float(arr)
    elif arr.ndim == 1 and dt.kind in "iuf":
        return tuple(float(x) for x in arr)
    raise CheckpointError(path, where, "attribute %r has unsupported type %s" % (key, dt))


def _read_attrs(obj, path, where, skip=()):
    return OrderedDict((k, _read_attr(obj, k, path, where)) for k in sorted(obj.attrs) if k not in skip)


def _state_array(value, where):
    """A state entry as a numpy array: tensors keep shape and dtype (bfloat16 widens to
    float32, which torch's load_state_dict casts back); Python scalars become 0-d int64,
    float64 or int8 datasets."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()
        return t.contiguous().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, np.bool_)):
        return np.array(1 if value else 0, dtype=np.int8)
    if isinstance(value, (int, np.integer)):
        return np.array(value, dtype=np.int64)
    if isinstance(value, (float, np.floating)):
        return np.array(value, dtype=np.float64)
    raise TypeError("%s = %r has no checkpoint type" % (where, value))


def _state_value(ds, path):
    """The inverse of _state_array: 0-d int64 / float64 / int8 are Python int / float / bool
    (SOAP's `step`), everything else a tensor (torch AdamW's 0-d float32 `step` included)."""
    dt = ds.dtype
    if h5py.check_string_dtype(dt) is not None or dt.kind not in "iufb":
        raise CheckpointError(path, ds.name, "state dataset has unsupported type %s" % dt)
    arr = ds[()]
    if ds.shape == ():
        if dt.kind == "b" or (dt.kind in "iu" and dt.itemsize == 1):
            return bool(arr)
        if dt == np.int64:
            return int(arr)
        if dt == np.float64:
            return float(arr)
    return torch.from_numpy(np.array(arr))


# ---------------------------------------------------------------------------------------------
# writing

def _tied_names(model):
    """name -> earlier name holding the same tensor storage (tied weights)."""
    seen, tied = {}, {}
    for name, t in model.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride())) if isinstance(t, torch.Tensor) else id(t)
        if key in seen:
            tied[name] = seen[key]
        else:
            seen[key] = name
    return tied


def _model_array(t):
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        return (t.float() if t.is_floating_point() else t).contiguous().numpy()
    return np.asarray(t)


def _write_optimizer(g, rec, where):
    attrs = OrderedDict([("class", rec.cls)])
    if rec.source is not None:
        attrs["source"] = rec.source
    for key, value in rec.args.items():
        if key in ("class", "source"):
            raise ValueError("%s: constructor argument %r clashes with a reserved attribute" % (where, key))
        attrs[key] = value
    _write_attrs(g, attrs, where)
    g.create_dataset("param_names", data=np.array(rec.param_names, dtype=object), dtype=_STR)
    groups = g.create_group("param_groups")
    for gi, group in enumerate(rec.state_dict["param_groups"]):
        pg = groups.create_group(str(gi))
        # torch >= 2.6 may keep the names in the group too; /param_names holds them already
        hp = OrderedDict((k, v) for k, v in group.items() if k not in ("params", "param_names"))
        _write_attrs(pg, hp, "%s/param_groups/%d" % (where, gi))
        pg.create_dataset("params", data=np.asarray(group["params"], dtype=np.int64).reshape(-1))
    state = g.create_group("state")
    for index in sorted(rec.state_dict["state"], key=int):
        sg = state.create_group(str(int(index)))
        for key, value in rec.state_dict["state"][index].items():
            sg.create_dataset(key, data=_state_array(value, "%s/state/%s/%s" % (where, index, key)))


def _fsync_dir(directory):
    fd = os.open(directory or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path, ck):
    """Writes a Checkpoint atomically: <path>.tmp, flush, fsync, rename, fsync the directory.
    A crash at any moment leaves either the old file or the new one at `path`."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.create("format", FORMAT, dtype=_STR)
            f.attrs["format_version"] = np.int64(FORMAT_VERSION)
            f.attrs["step"] = np.int64(ck.step)
            f.attrs.create("producer", ck.producer or "", dtype=_STR)
            if ck.config:
                f.attrs.create("config", ck.config, dtype=_STR)
            model = f.create_group("model")
            tied = _tied_names(ck.model)
            for name, t in ck.model.items():
                if name not in tied:
                    model.create_dataset(name, data=_model_array(t))
            for name, target in tied.items():
                model[name] = model[target]  # an HDF5 hard link: one dataset, two names
            opts = f.create_group("optimizers")
            for name, rec in ck.optimizers.items():
                _write_optimizer(opts.create_group(name), rec, "/optimizers/" + name)
            schedules = OrderedDict((n, r.schedule) for n, r in ck.optimizers.items() if r.schedule is not None)
            if schedules:
                sg = f.create_group("schedules")
                for name, attrs in schedules.items():
                    _write_attrs(sg.create_group(name), attrs, "/schedules/" + name)
            if ck.trainer is not None or ck.trainer_data:
                tg = f.create_group("trainer")
                _write_attrs(tg, ck.trainer or {}, "/trainer")
                for name, t in (ck.trainer_data or {}).items():
                    tg.create_dataset(name, data=_state_array(t, "/trainer/" + name))
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(os.path.dirname(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------------------------
# reading

def _require(cond, path, where, what):
    if not cond:
        raise CheckpointError(path, where, what)


def _group(parent, name, path):
    where = (parent.name.rstrip("/") + "/" + name)
    _require(name in parent and isinstance(parent[name], h5py.Group), path, where, "missing group")
    return parent[name]


def _numbered(g, path):
    """Members of a group named 0, 1, ... in numeric order."""
    names = list(g.keys())
    for n in names:
        _require(n.isdigit(), path, g.name, "member %r is not an index" % n)
    return sorted(names, key=int)


def _read_optimizer(g, path):
    where = g.name
    _require("class" in g.attrs, path, where, "missing attribute 'class'")
    attrs = _read_attrs(g, path, where)
    cls = attrs.pop("class")
    _require(isinstance(cls, str) and cls, path, where + "@class", "class %r is not a name" % (cls,))
    source = attrs.pop("source", None)
    _require("param_names" in g and isinstance(g["param_names"], h5py.Dataset), path, where + "/param_names", "missing dataset")
    pn = g["param_names"]
    _require(h5py.check_string_dtype(pn.dtype) is not None and pn.ndim == 1, path, pn.name,
             "param_names must be a 1-D string dataset, got %s %s" % (pn.dtype, pn.shape))
    names = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in pn[()]]
    groups, owner = [], {}
    pgs = _group(g, "param_groups", path)
    for gi in _numbered(pgs, path):
        pg = pgs[gi]
        hp = _read_attrs(pg, path, pg.name)
        _require("params" in pg, path, pg.name + "/params", "missing dataset")
        idx = pg["params"]
        _require(idx.dtype.kind in "iu" and idx.ndim == 1, path, idx.name, "params must be a 1-D integer dataset, got %s %s" % (idx.dtype, idx.shape))
        params = [int(i) for i in idx[()]]
        for i in params:
            _require(0 <= i < len(names), path, idx.name, "state index %d is outside param_names [0, %d)" % (i, len(names)))
            _require(i not in owner, path, idx.name, "state index %d is also in group %s" % (i, owner.get(i)))
            owner[i] = gi
        hp["params"] = params
        groups.append(hp)
    _require(len(owner) == len(names), path, where + "/param_names",
             "%d names but the groups hold %d parameters" % (len(names), len(owner)))
    state = {}
    sg = _group(g, "state", path)
    for i in _numbered(sg, path):
        _require(int(i) in owner, path, sg[i].name, "state index %s is in no param group" % i)
        entry = OrderedDict()
        for key in sorted(sg[i]):
            _require(isinstance(sg[i][key], h5py.Dataset), path, sg[i][key].name, "state entry is not a dataset")
            entry[key] = _state_value(sg[i][key], path)
        state[int(i)] = entry
    return OptimizerRecord(cls, {"state": state, "param_groups": groups}, names, attrs, source)


def _open(path):
    if not os.path.exists(path):
        raise CheckpointError(path, "/", "no such file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(path, "/", "not an HDF5 file (%s)" % e) from None


def read(path):
    """Reads and validates a checkpoint; returns a Checkpoint. Raises CheckpointError."""
    path = os.fspath(path)
    with _open(path) as f:
        fmt = _read_attr(f, "format", path, "/") if "format" in f.attrs else None
        _require(fmt == FORMAT, path, "/@format", "format is %r, expected %r" % (fmt, FORMAT))
        version = _read_attr(f, "format_version", path, "/") if "format_version" in f.attrs else None
        _require(isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= FORMAT_VERSION,
                 path, "/@format_version", "format_version %r is not one this reader knows (<= %d)" % (version, FORMAT_VERSION))
        step = _read_attr(f, "step", path, "/") if "step" in f.attrs else None
        _require(isinstance(step, int), path, "/@step", "step %r is not an integer" % (step,))
        producer = _read_attr(f, "producer", path, "/") if "producer" in f.attrs else ""
        config = _read_attr(f, "config", path, "/") if "config" in f.attrs else ""
        model, by_addr = OrderedDict(), {}
        mg = _group(f, "model", path)
        for name in mg:
            ds = mg[name]
            _require(isinstance(ds, h5py.Dataset) and ds.dtype.kind in "iuf", path, ds.name, "model entry must be a numeric dataset")
            addr = h5py.h5o.get_info(ds.id).addr
            if addr not in by_addr:  # hard links read as one shared tensor, as torch ties them
                by_addr[addr] = torch.from_numpy(np.array(ds[()]))
            model[name] = by_addr[addr]
        optimizers = OrderedDict()
        if "optimizers" in f:
            for name in f["optimizers"]:
                rec = _read_optimizer(f["optimizers"][name], path)
                for i, pname in enumerate(rec.param_names):
                    _require(pname in model, path, f["optimizers"][name].name + "/param_names",
                             "param_names[%d] = %r is not in /model" % (i, pname))
                if "schedules" in f and name in f["schedules"]:
                    rec.schedule = _read_attrs(f["schedules"][name], path, "/schedules/" + name)
                optimizers[name] = rec
        trainer = trainer_data = None
        if "trainer" in f:
            trainer = _read_attrs(f["trainer"], path, "/trainer")
            trainer_data = OrderedDict((k, _state_value(f["trainer"][k], path)) for k in sorted(f["trainer"]))
        return Checkpoint(step, model, optimizers, producer, trainer, trainer_data, config)
