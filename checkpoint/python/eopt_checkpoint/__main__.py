"""python3 -m eopt_checkpoint import|export|diff|inspect ...

  import CKPT.h5 OUT.pt     eopt checkpoint -> torch.save bundle: {"step", "model", "optimizers":
                            {name: {"class", "args", "source", "param_names", "state_dict",
                            "schedule"}}, "producer", "trainer", "trainer_data", "config"}
  export IN.pt CKPT.h5 [--args NAME JSON] [--source NAME TEXT] [--step N]
                            such a bundle (e.g. edited in PyTorch) -> eopt checkpoint
  diff A.h5 B.h5            exit 0 iff both hold the same groups, datasets and attributes
  inspect CKPT.h5           validate and summarise
"""
import argparse
import json
import sys

import torch

from . import layout
from .compare import diff


def _bundle(ck):
    return {"format": layout.FORMAT, "step": ck.step, "producer": ck.producer, "model": ck.model,
            "optimizers": {n: {"class": r.cls, "args": dict(r.args), "source": r.source, "param_names": r.param_names,
                               "state_dict": r.state_dict, "schedule": r.schedule} for n, r in ck.optimizers.items()},
            "trainer": ck.trainer, "trainer_data": ck.trainer_data, "config": ck.config}


def _checkpoint(b, args, sources, step):
    recs = {}
    for n, o in b["optimizers"].items():
        a = dict(o.get("args") or {})
        a.update(args.get(n, {}))
        recs[n] = layout.OptimizerRecord(o["class"], o["state_dict"], o["param_names"], a,
                                         sources.get(n, o.get("source")), o.get("schedule"))
    return layout.Checkpoint(b.get("step", 0) if step is None else step, b["model"], recs,
                             b.get("producer") or "eopt_checkpoint export / torch " + torch.__version__,
                             b.get("trainer"), b.get("trainer_data"), b.get("config") or "")


def _inspect(ck, out):
    out.write("step %d, producer %r, %d model tensors\n" % (ck.step, ck.producer, len(ck.model)))
    for n, r in ck.optimizers.items():
        out.write("optimizer %s: %s (%s), %d params in %d groups, state for %d; args %s\n" % (
            n, r.cls, r.source, len(r.param_names), len(r.state_dict["param_groups"]), len(r.state_dict["state"]),
            json.dumps(r.args)))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m eopt_checkpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("import")
    s.add_argument("checkpoint")
    s.add_argument("out")
    s = sub.add_parser("export")
    s.add_argument("bundle")
    s.add_argument("checkpoint")
    s.add_argument("--args", nargs=2, action="append", default=[], metavar=("NAME", "JSON"))
    s.add_argument("--source", nargs=2, action="append", default=[], metavar=("NAME", "TEXT"))
    s.add_argument("--step", type=int)
    s = sub.add_parser("diff")
    s.add_argument("a")
    s.add_argument("b")
    s = sub.add_parser("inspect")
    s.add_argument("checkpoint")
    a = p.parse_args(argv)
    try:
        if a.cmd == "import":
            torch.save(_bundle(layout.read(a.checkpoint)), a.out)
        elif a.cmd == "export":
            b = torch.load(a.bundle)
            layout.write(a.checkpoint, _checkpoint(b, {n: json.loads(j) for n, j in a.args}, dict(a.source), a.step))
        elif a.cmd == "diff":
            d = diff(a.a, a.b)
            for line in d:
                print(line)
            return 1 if d else 0
        else:
            _inspect(layout.read(a.checkpoint), sys.stdout)
    except (layout.CheckpointError, ValueError, TypeError, KeyError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
