"""PyTorch objects <-> eopt checkpoints.

    save(path, model, {"muon": muon, "adamw": adamw}, step=1000)      # PyTorch -> eopt
    ck = load(path, model, {"muon": muon, "adamw": adamw})           # eopt -> PyTorch, in place
    opt = build_optimizer(ck, "0", model)                            # or build it from the file
"""
import inspect
import warnings
from collections import OrderedDict

import torch

from . import layout
from .optimizers import constructor_args, default_source

__version__ = "1"


def _model_state(model):
    return model.state_dict() if isinstance(model, torch.nn.Module) else OrderedDict(model)


def _param_names(model, opt, where):
    """Model name of each of opt's state indices (torch numbers them over param_groups)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError("%s: parameter names need the nn.Module (or pass OptimizerRecords)" % where)
    by_id = {}
    for name, p in model.named_parameters():  # the first name of a tied parameter
        by_id.setdefault(id(p), name)
    names = []
    for g in opt.param_groups:
        for p in g["params"]:
            if id(p) not in by_id:
                raise ValueError("%s: a parameter of shape %s is not in the model" % (where, tuple(p.shape)))
            names.append(by_id[id(p)])
    return names


def _schedule_attrs(sched):
    """A torch LR scheduler as /schedules attributes: its kind and every scalar or numeric list
    of its state_dict (last_epoch, base_lrs, ...); callables are not storable and are left out."""
    attrs = OrderedDict(kind=type(sched).__name__, source="%s.%s" % (type(sched).__module__, type(sched).__name__))
    for k, v in sched.state_dict().items():
        if isinstance(v, (bool, int, float, str)):
            attrs[k] = v
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            attrs[k] = tuple(float(x) for x in v)
    return attrs


def record(opt, model, args=None, source=None, scheduler=None, name="0"):
    """An OptimizerRecord for a live torch optimizer (`args` overrides or completes what the
    instance yields, see optimizers.constructor_args)."""
    where = "optimizer %r (%s)" % (name, type(opt).__name__)
    return layout.OptimizerRecord(type(opt).__name__, opt.state_dict(), _param_names(model, opt, where),
                                  constructor_args(opt, args), source or default_source(opt),
                                  _schedule_attrs(scheduler) if scheduler is not None else None)


def save(path, model, optimizers, step, args=None, sources=None, schedulers=None, producer=None):
    """Writes model and optimizers as one eopt checkpoint (atomically).

    optimizers: {name: torch optimizer} (a single optimizer is named "0"); args: {name: {arg:
    value}} for constructor arguments the instance does not keep; sources: {name: text};
    schedulers: {name: LR scheduler}."""
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"0": optimizers}
    args, sources, schedulers = args or {}, sources or {}, schedulers or {}
    recs = OrderedDict((n, record(o, model, args.get(n), sources.get(n), schedulers.get(n), n)) for n, o in optimizers.items())
    producer = producer or "eopt_checkpoint %s / torch %s" % (__version__, torch.__version__)
    layout.write(path, layout.Checkpoint(int(step), _model_state(model), recs, producer))


def optimizer_state_dict(rec, opt=None):
    """What `opt.load_state_dict` takes. A key the live optimizer's groups carry but the file
    lacks was None when written (checkpoint.md: None is absent), so it comes back as None."""
    sd = {"state": {i: OrderedDict(e) for i, e in rec.state_dict["state"].items()},
          "param_groups": [OrderedDict(g) for g in rec.state_dict["param_groups"]]}
    if opt is not None:
        if len(opt.param_groups) != len(sd["param_groups"]):
            raise ValueError("%s has %d param groups, the file %d" % (type(opt).__name__, len(opt.param_groups), len(sd["param_groups"])))
        for gi, (live, g) in enumerate(zip(opt.param_groups, sd["param_groups"])):
            if len(live["params"]) != len(g["params"]):
                raise ValueError("%s param group %d holds %d parameters, the file's %d" % (
                    type(opt).__name__, gi, len(live["params"]), len(g["params"])))
            for k in live:
                if k not in g and k != "params":
                    g[k] = None
            params = g.pop("params")
            g["params"] = params
    return sd


def _check_names(rec, opt, model, name):
    names = _param_names(model, opt, "optimizer %r" % name)
    if names != rec.param_names:
        diff = next(i for i in range(max(len(names), len(rec.param_names)))
                    if i >= len(names) or i >= len(rec.param_names) or names[i] != rec.param_names[i])
        raise ValueError("optimizer %r: state index %d is %r in the file but %r here" % (
            name, diff, rec.param_names[diff] if diff < len(rec.param_names) else None, names[diff] if diff < len(names) else None))


def _check_model(ck, model, path):
    """torch's load_state_dict copies as it goes and complains at the end; check first."""
    live = model.state_dict()
    for name, t in live.items():
        if name not in ck.model:
            raise ValueError("%s:/model/%s: missing" % (path, name))
        if tuple(ck.model[name].shape) != tuple(t.shape):
            raise ValueError("%s:/model/%s: shape %s, the model has %s" % (path, name, tuple(ck.model[name].shape), tuple(t.shape)))
    extra = [n for n in ck.model if n not in live]
    if extra:
        raise ValueError("%s:/model/%s: not in the model" % (path, extra[0]))


class ArgumentMismatchWarning(UserWarning):
    """A live optimizer was built with other constructor arguments than the checkpoint's."""


def _same_value(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def _warn_argument_changes(path, name, rec, opt):
    """torch's load_state_dict takes state and groups only: constructor arguments (nesterov,
    scale_mode, ...) stay the live instance's. Each one the instance keeps that differs from the
    file's is named in one warning, so that a run does not continue with other settings unnoticed."""
    try:
        live = constructor_args(opt)
    except ValueError:  # the instance does not keep them all: nothing to compare against
        return
    diffs = ["%s: file %r, live %r" % (k, v, live[k]) for k, v in rec.args.items()
             if k in live and not _same_value(v, live[k])]
    if diffs:
        warnings.warn("%s:/optimizers/%s: the live %s was built with other constructor arguments than the file's "
                      "and keeps its own: %s" % (path, name, type(opt).__name__, "; ".join(diffs)),
                      ArgumentMismatchWarning, stacklevel=3)


def load(path, model=None, optimizers=None, schedulers=None):
    """Reads an eopt checkpoint and loads it into the given torch objects (all validated before
    any is changed); returns the Checkpoint (step, model state, OptimizerRecords with class
    and constructor arguments). A live optimizer whose constructor arguments differ from the
    file's gets a ArgumentMismatchWarning naming each difference (the live values stay)."""
    ck = layout.read(path)
    if isinstance(optimizers, torch.optim.Optimizer):
        optimizers = {"0": optimizers}
    optimizers, schedulers = optimizers or {}, schedulers or {}
    sds = {}
    for name, opt in optimizers.items():
        if name not in ck.optimizers:
            raise KeyError("%s: no optimizer %r (the file has %s)" % (path, name, ", ".join(ck.optimizers)))
        rec = ck.optimizers[name]
        if rec.cls != type(opt).__name__:
            raise ValueError("%s:/optimizers/%s: class %r does not match the live %s" % (path, name, rec.cls, type(opt).__name__))
        if model is not None:
            _check_names(rec, opt, model, name)
        sds[name] = optimizer_state_dict(rec, opt)
        _warn_argument_changes(path, name, rec, opt)
    if model is not None:
        _check_model(ck, model, path)
        model.load_state_dict(ck.model)
    for name, opt in optimizers.items():
        opt.load_state_dict(sds[name])
    for name, sched in schedulers.items():
        attrs = dict(ck.optimizers[name].schedule or {})
        attrs.pop("kind", None), attrs.pop("source", None)
        sched.load_state_dict({k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()})
    return ck


def build_optimizer(ck, name, model, cls=None):
    """Constructs the optimizer stored under `name` for `model`: its class (a torch.optim class
    by name, or `cls` for upstream classes), its constructor arguments and param groups, and
    loads its state."""
    rec = ck.optimizers[name]
    if cls is None:
        cls = getattr(torch.optim, rec.cls, None)
        if cls is None:
            raise ValueError("optimizer %r: %s is not a torch.optim class; pass its class as cls" % (name, rec.cls))
    params = dict(model.named_parameters())
    groups = []
    for g in rec.state_dict["param_groups"]:
        hp = OrderedDict((k, v) for k, v in g.items() if k != "params")
        hp["params"] = [params[rec.param_names[i]] for i in g["params"]]
        groups.append(hp)
    kwargs = dict(rec.args)
    # a required constructor argument that is a group key (SOAP's lr) comes from the first group
    for pname, prm in list(inspect.signature(cls.__init__).parameters.items())[2:]:
        if prm.default is prm.empty and prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY) and pname not in kwargs:
            kwargs[pname] = groups[0][pname]
    opt = cls(groups, **kwargs)
    opt.load_state_dict(optimizer_state_dict(rec, opt))
    return opt
