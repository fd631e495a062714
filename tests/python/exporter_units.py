"""Exporter and importer details: constructor arguments from instances, closures and explicit
mappings; refusals that name what is wrong; the HDF5 types of every kind of value; tied
weights as hard links; atomic writes; importer validation; LR schedulers."""
import os
import warnings

from common import MOSO, SOAP, Muon, fail, tmp_path

import h5py
import numpy as np
import torch
import eopt_checkpoint as ec


def expect_error(fn, *words):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the message is what is tested
        msg = str(e)
        for w in words:
            if w not in msg:
                fail("error %r does not mention %r" % (msg, w))
        return msg
    fail("no error (expected one mentioning %s)" % (words,))


class Tiny(torch.nn.Module):
    """GPT-like naming with a tied head: lm_head.weight is transformer.wte.weight."""

    def __init__(self):
        super().__init__()
        self.transformer = torch.nn.Module()
        self.transformer.wte = torch.nn.Embedding(8, 4)
        self.transformer.h = torch.nn.Linear(4, 4)
        self.lm_head = torch.nn.Linear(4, 8, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        return self.lm_head(torch.tanh(self.transformer.h(self.transformer.wte(idx))))


def train(model, opt, steps=2):
    torch.manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randint(0, 8, (5,))).square().mean().backward()
        opt.step()


def test_adamw_types_and_ties(path):
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    train(model, opt)
    sched.step()
    ec.save(path, model, {"adamw": opt}, step=2, schedulers={"adamw": sched})
    if os.path.exists(path + ".tmp"):
        fail("a .tmp file was left behind")
    with h5py.File(path, "r") as f:
        def kind(obj, key):
            a = obj.attrs.get_id(key)
            s = h5py.check_string_dtype(a.dtype)
            return ("vlen" if s and s.length is None else "fixed" if s else "-", a.dtype.str, a.shape)
        checks = {"format": ("vlen", "|O", ()), "format_version": ("-", "<i8", ()), "step": ("-", "<i8", ())}
        for k, want in checks.items():
            got = kind(f, k)
            if got != want:
                fail("/@%s stored as %s, expected %s" % (k, got, want))
        if f.attrs.get_id("format").get_type().get_cset() != h5py.h5t.CSET_UTF8:
            fail("strings are not UTF-8")
        g = f["optimizers/adamw/param_groups/0"]
        types = {k: g.attrs.get_id(k).dtype.str for k in g.attrs}
        for k, want in dict(lr="<f8", eps="<f8", amsgrad="|i1", maximize="|i1", betas="<f8").items():
            if types.get(k) != want:
                fail("param group %s stored as %s, expected %s" % (k, types.get(k), want))
        if "foreach" in g.attrs:
            fail("None (foreach) must be an absent attribute")
        if g.attrs["betas"].shape != (2,):
            fail("betas is not a float64 array of 2")
        st = f["optimizers/adamw/state/0/step"]
        if st.dtype != np.float32 or st.shape != ():
            fail("AdamW step stored as %s %s, expected 0-d float32" % (st.dtype, st.shape))
        if f["optimizers/adamw/param_groups/0/params"].dtype != np.int64:
            fail("params is not int64")
        names = [x.decode() for x in f["optimizers/adamw/param_names"][()]]
        if names[0] != "transformer.wte.weight" or "lm_head.weight" in names:
            fail("tied parameter named %s" % names)
        a, b = f["model/lm_head.weight"], f["model/transformer.wte.weight"]
        if h5py.h5o.get_info(a.id).addr != h5py.h5o.get_info(b.id).addr:
            fail("tied weights are not one dataset (hard link)")
        if f["schedules/adamw"].attrs["kind"] != "StepLR" or f["schedules/adamw"].attrs["last_epoch"] != 1:
            fail("scheduler attributes: %s" % dict(f["schedules/adamw"].attrs))
    # import into fresh objects: identical state, right Python types, training continues equally
    torch.manual_seed(5)
    model2 = Tiny()
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1.0)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.1)
    ck = ec.load(path, model2, {"adamw": opt2}, {"adamw": sched2})
    if ck.step != 2 or ck.optimizers["adamw"].cls != "AdamW" or ck.optimizers["adamw"].args:
        fail("import: step %s class %s args %s" % (ck.step, ck.optimizers["adamw"].cls, ck.optimizers["adamw"].args))
    if model2.lm_head.weight is not model2.transformer.wte.weight:
        fail("loading broke the tie")
    s = opt2.state_dict()["state"][0]["step"]
    if not isinstance(s, torch.Tensor) or s.dtype != torch.float32 or float(s) != 2.0:
        fail("AdamW step imported as %r" % (s,))
    if sched2.step_size != 3 or sched2.last_epoch != 1 or opt2.param_groups[0]["foreach"] is not None:
        fail("scheduler or group not restored: %s %s" % (sched2.state_dict(), opt2.param_groups[0]))
    train(model, opt, 3)
    train(model2, opt2, 3)
    for (n, p), q in zip(model.named_parameters(), model2.parameters()):
        if not torch.equal(p, q):
            fail("resumed training differs at %s" % n)


def test_upstream_args(path):
    model = torch.nn.Linear(6, 4, bias=False)
    opt = Muon(model.parameters(), lr=0.02, nesterov=True, coefficient_type="polar_express", num_ns_steps=6,
               scale_mode="shape_scaling", fp32_matmul_prec="highest")
    args = ec.constructor_args(opt)
    want = dict(nesterov=True, coefficient_type="polar_express", num_ns_steps=6, scale_mode="shape_scaling",
                extra_scale_factor=1.0, use_syrk=False, fp32_matmul_prec="highest", weight_decay_method="decoupled")
    if dict(args) != want:
        fail("Muon arguments from instance and closure: %s, expected %s" % (dict(args), want))
    # the explicit mapping overrides and completes
    ec.save(path, model, opt, step=0, args={"0": {"num_ns_steps": 7, "my_flag": True}})
    rec = ec.read(path).optimizers["0"]
    if rec.args["num_ns_steps"] != 7 or rec.args["my_flag"] is not True or rec.cls != "Muon":
        fail("explicit mapping not applied: %s" % dict(rec.args))
    if "NVIDIA-NeMo/Emerging-Optimizers" not in rec.source:
        fail("source %r does not name the repository" % rec.source)
    with h5py.File(path, "r") as f:
        if f["optimizers/0"].attrs.get_id("nesterov").dtype != np.int8 or f["optimizers/0"].attrs.get_id("num_ns_steps").dtype != np.int64:
            fail("bool / int constructor arguments not int8 / int64")
    # closure values that cannot be found must be supplied, and the message says which
    opt.scaled_orthogonalize_fn = torch.nn.Identity()
    expect_error(lambda: ec.save(path, model, opt, step=0), "coefficient_type", "num_ns_steps", "explicitly")
    ec.save(path, model, opt, step=0, args={"0": dict(coefficient_type="quintic", num_ns_steps=5, scale_mode="spectral",
                                                      extra_scale_factor=1.0, use_syrk=False)})
    # SOAP: a callable frequency is not storable; int step state is an int64 0-d dataset
    soap = SOAP(model.parameters(), lr=0.1, precondition_frequency=lambda k: 1)
    expect_error(lambda: ec.save(path, model, soap, step=0), "precondition_frequency")
    soap = SOAP(model.parameters(), lr=0.1, precondition_frequency=3)
    soap.state[model.weight] = {"step": 4, "exp_avg": torch.zeros(4, 6)}
    ec.save(path, model, soap, step=4)
    with h5py.File(path, "r") as f:
        d = f["optimizers/0/state/0/step"]
        if d.dtype != np.int64 or d.shape != ():
            fail("SOAP int step stored as %s %s" % (d.dtype, d.shape))
        if f["optimizers/0"].attrs["precondition_frequency"] != 3 or "correct_shampoo_beta_bias" in f["optimizers/0"].attrs:
            fail("SOAP constructor attributes: %s" % dict(f["optimizers/0"].attrs))
    back = ec.read(path).optimizers["0"].state_dict["state"][0]["step"]
    if type(back) is not int or back != 4:
        fail("SOAP step imported as %r" % (back,))
    # MOSO has a single instance argument; an unknown class exports its groups and explicit args only
    if dict(ec.constructor_args(MOSO(model.parameters(), max_update_rms=1.0))) != {"max_update_rms": 1.0}:
        fail("MOSO arguments")

    class Custom(torch.optim.SGD):
        pass
    c = Custom(model.parameters(), lr=0.1, momentum=0.9)
    if dict(ec.constructor_args(c, {"x": 1})) != {"x": 1}:
        fail("unknown class arguments")


def test_load_names_changed_arguments(path):
    """Issue 15, defect 4: loading into an upstream Muon built with other constructor arguments
    than the file's was silent; now one warning names each difference (the live values stay)."""
    model = torch.nn.Linear(6, 4, bias=False)
    kw = dict(lr=0.02, nesterov=True, coefficient_type="quintic", num_ns_steps=5, scale_mode="shape_scaling")
    ec.save(path, model, Muon(model.parameters(), **kw), step=0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ec.load(path, model, Muon(model.parameters(), **kw))
    if seen:
        fail("same arguments, yet warned: %s" % [str(w.message) for w in seen])
    kw.update(nesterov=False, scale_mode="spectral")
    other = Muon(model.parameters(), **kw)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ec.load(path, model, other)
    msgs = [str(w.message) for w in seen if issubclass(w.category, ec.ArgumentMismatchWarning)]
    if len(msgs) != 1 or not all(x in msgs[0] for x in ("/optimizers/0", "nesterov: file True, live False",
                                                         "scale_mode: file 'shape_scaling', live 'spectral'")):
        fail("changed arguments: warnings %s" % msgs)
    if other.nesterov is not False:
        fail("the live arguments changed")


def test_import_refusals(path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_lin = model(torch.ones(3)).sum()
    train_lin.backward()
    opt.step()
    ec.save(path, model, opt, step=1)
    expect_error(lambda: ec.read(path + ".missing"), path + ".missing", "no such file")
    with open(tmp_path("not.h5"), "w") as fh:
        fh.write("hello")
    expect_error(lambda: ec.read(tmp_path("not.h5")), "not.h5", "not an HDF5 file")
    os.unlink(tmp_path("not.h5"))
    bad = tmp_path("bad.h5")
    for attr, value, words in (("format", "pytorch", ("/@format", "pytorch")),
                               ("format_version", np.int64(2), ("/@format_version", "2"))):
        ck = ec.read(path)
        ec.write(bad, ck)
        with h5py.File(bad, "r+") as f:
            f.attrs[attr] = value
        expect_error(lambda: ec.read(bad), bad, *words)
    with h5py.File(bad, "r+") as f:
        f.attrs["format_version"] = np.int64(1)
        del f["model/bias"]
    expect_error(lambda: ec.read(bad), bad, "/optimizers/0/param_names", "bias")
    # a model that does not match: nothing is loaded
    other = torch.nn.Linear(3, 3)
    before = [p.clone() for p in other.parameters()]
    expect_error(lambda: ec.load(path, other, None), path, "/model/weight", "(2, 3)")
    if not all(torch.equal(a, b) for a, b in zip(before, other.parameters())):
        fail("a refused load changed the model")
    # a failed write keeps the previous file and leaves no .tmp
    before = open(path, "rb").read()
    opt.param_groups[0]["weird"] = object()
    expect_error(lambda: ec.save(path, model, opt, step=2), "weird")
    if open(path, "rb").read() != before or os.path.exists(path + ".tmp"):
        fail("a failed save damaged the previous checkpoint")
    os.unlink(bad)


def main():
    path = tmp_path("units.h5")
    try:
        test_adamw_types_and_ties(path)
        test_upstream_args(path)
        test_load_names_changed_arguments(path)
        test_import_refusals(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    print("exporter/importer units ok")


main()
