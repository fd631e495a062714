"""Shared by the Python tests: the package path, the fixtures, a module built from parameter
names, and stand-ins for the upstream optimizer classes (not installed here) that keep their
constructor arguments where upstream does (instance attributes and closure cells, per
shared/spec/algorithms/*.md), under upstream's class names and module paths."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "checkpoint", "python"))

import torch  # noqa: E402

FIXTURES = os.environ.get("EOPT_FIXTURES", os.path.join(HERE, "..", "..", "..", "shared", "fixtures"))
EOPT_BIN = os.environ.get("EOPT_BIN", os.path.join(HERE, "..", "..", "build", "eopt"))
TMP = os.environ.get("TMPDIR", "/tmp")


def tmp_path(name):
    return os.path.join(TMP, "eopt-pytest-%d-%s" % (os.getpid(), name))


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def module_from_names(names, tensors):
    """An nn.Module whose state_dict has exactly these dotted names; names holding one tensor
    object (tied weights) share one Parameter, registered under the first name given."""
    root, made = torch.nn.Module(), {}
    for name in names:
        t = tensors[name]
        owner = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        if id(t) not in made:
            made[id(t)] = torch.nn.Parameter(t.clone())
        owner.register_parameter(leaf, made[id(t)])
    return root


class _Base(torch.optim.Optimizer):
    def step(self, closure=None):
        raise NotImplementedError("stand-in")


def _nvidia_closure(num_ns_steps, coefficient_type, scale_mode, extra_scale_factor, use_syrk):
    def scaled_orthogonalize_fn(grad):  # upstream's closure captures exactly these names
        return (grad, num_ns_steps, coefficient_type, scale_mode, extra_scale_factor, use_syrk)
    return scaled_orthogonalize_fn


class Muon(_Base):
    def __init__(self, params, lr=3e-4, momentum=0.95, weight_decay=0.01, *, nesterov=False,
                 weight_decay_method="decoupled", fp32_matmul_prec="medium", coefficient_type="quintic",
                 num_ns_steps=5, scale_mode="spectral", extra_scale_factor=1.0, use_syrk=False):
        self.fp32_matmul_prec, self.nesterov, self.weight_decay_method = fp32_matmul_prec, nesterov, weight_decay_method
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.scaled_orthogonalize_fn = _nvidia_closure(num_ns_steps, coefficient_type, scale_mode, extra_scale_factor, use_syrk)


class AdaptiveMuon(_Base):
    def __init__(self, params, lr=3e-4, momentum=0.95, weight_decay=0.01, *, nesterov=False,
                 weight_decay_method="decoupled", fp32_matmul_prec="medium", coefficient_type="quintic",
                 num_ns_steps=5, scale_mode="spectral", extra_scale_factor=1.0, moment2_method="adamuon",
                 beta2=0.95, eps=1e-8):
        self.scale_mode, self.extra_scale_factor = scale_mode, extra_scale_factor

        def raw_orthogonalize_fn(grad):
            return (grad, num_ns_steps, coefficient_type)
        self.fp32_matmul_prec, self.nesterov, self.weight_decay_method = fp32_matmul_prec, nesterov, weight_decay_method
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.scaled_orthogonalize_fn = raw_orthogonalize_fn
        self.moment2_method = moment2_method
        for g in self.param_groups:
            g.setdefault("beta2", beta2)
            g.setdefault("eps", eps)


class Muown(_Base):
    def __init__(self, params, lr=3e-4, momentum=0.95, weight_decay=0.0, *, betas=(0.9, 0.95), adam_eps=1e-8,
                 fp32_matmul_prec="medium", coefficient_type="quintic", num_ns_steps=5, scale_mode="spectral",
                 extra_scale_factor=1.0, use_syrk=False):
        self.betas, self.adam_eps = betas, adam_eps
        self.fp32_matmul_prec, self.nesterov, self.weight_decay_method = fp32_matmul_prec, False, "decoupled"
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        self.scaled_orthogonalize_fn = _nvidia_closure(num_ns_steps, coefficient_type, scale_mode, extra_scale_factor, use_syrk)


class SOAP(_Base):
    def __init__(self, params, lr, betas=(0.9, 0.95), shampoo_beta=0.95, eps=1e-8, weight_decay=0.01, *,
                 weight_decay_method="decoupled", nesterov=False, precondition_frequency=1, adam_warmup_steps=0,
                 correct_bias=True, fp32_matmul_prec="high", use_eigh=False, qr_fp32_matmul_prec="high",
                 use_adaptive_criteria=False, adaptive_update_tolerance=1e-7, power_iter_steps=1,
                 max_update_rms=0.0, use_kl_shampoo=False, correct_shampoo_beta_bias=None):
        super().__init__(params, dict(lr=lr, betas=betas, shampoo_beta=shampoo_beta, eps=eps, weight_decay=weight_decay))
        self.precondition_frequency, self.adam_warmup_steps, self.nesterov = precondition_frequency, adam_warmup_steps, nesterov
        self.correct_bias, self.weight_decay_method, self.fp32_matmul_prec = correct_bias, weight_decay_method, fp32_matmul_prec
        self.use_eigh, self.qr_fp32_matmul_prec, self.use_adaptive_criteria = use_eigh, qr_fp32_matmul_prec, use_adaptive_criteria
        self.adaptive_update_tolerance, self.power_iter_steps = adaptive_update_tolerance, power_iter_steps
        self.max_update_rms, self.use_kl_shampoo = max_update_rms, use_kl_shampoo
        self.correct_shampoo_beta_bias = correct_bias if correct_shampoo_beta_bias is None else correct_shampoo_beta_bias


class MOSO(_Base):
    def __init__(self, params, lr=3e-4, momentum=0.95, betas=(0.9, 0.95), shampoo_beta=0.95, eps=1e-8,
                 weight_decay=0.01, *, max_update_rms=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, betas=betas, shampoo_beta=shampoo_beta, eps=eps,
                                      weight_decay=weight_decay))
        self.weight_decay_method, self.max_update_rms = "decoupled", max_update_rms


for _c, _m in ((Muon, "emerging_optimizers.orthogonalized_optimizers.muon"),
               (AdaptiveMuon, "emerging_optimizers.orthogonalized_optimizers.adaptive_muon"),
               (Muown, "emerging_optimizers.contrib.muown"), (SOAP, "emerging_optimizers.soap.soap"),
               (MOSO, "emerging_optimizers.soap.moso")):
    _c.__module__ = _m


# dion: flags survive only as the orthogonaliser picked; softening wraps it in a closure.
def polar_express(X, epsilon=None):
    return X


def zeropower_via_newtonschulz5(X, epsilon=None):
    return X


def _soften_newton_schulz(newton_schulz_func, softening):
    def softened(X, epsilon=None):
        return newton_schulz_func(X, epsilon) * softening
    return softened


class _Dion(_Base):
    _algo = None

    def __init__(self, params, defaults, softening=0.0, use_polar_express=True, use_triton=False,
                 use_gram_newton_schulz=False):
        super().__init__(params, defaults)
        self._algo_name = self._algo
        self._newton_schulz_func = polar_express if use_polar_express else zeropower_via_newtonschulz5
        self._softening = softening
        if softening > 0:
            self._newton_schulz_func = _soften_newton_schulz(self._newton_schulz_func, softening)


def _dion_class(name, keys, extra=()):
    def __init__(self, params, distributed_mesh=None, lr=0.01, betas=(0.9, 0.95), softening=0.0,
                 use_polar_express=True, use_triton=False, use_gram_newton_schulz=False, verbose=False,
                 triton_post_ortho=False, **kw):
        defaults = dict(lr=lr, **{k: kw.get(k, v) for k, v in keys.items()})
        defaults["beta1"], defaults["beta2"] = betas
        _Dion.__init__(self, params, defaults, softening, use_polar_express, use_triton, use_gram_newton_schulz)
        if "verbose" in extra:
            self.verbose = verbose
        if "triton_post_ortho" in extra:
            self._triton_post_ortho = triton_post_ortho
    cls = type(name, (_Dion,), {"__init__": __init__, "_algo": name.lower()})
    cls.__module__ = "dion." + name.lower()
    return cls


_DK = dict(mu=0.95, weight_decay=0.01, epsilon=1e-8, algorithm="x", step=0)
DionMuon = _dion_class("Muon", _DK)
NorMuon = _dion_class("NorMuon", dict(_DK, muon_beta2=0.95))
Dion2 = _dion_class("Dion2", dict(_DK, ef_decay=0.95, fraction=0.25), ("verbose", "triton_post_ortho"))
NorDion2 = _dion_class("NorDion2", dict(_DK, muon_beta2=0.95, fraction=0.25), ("triton_post_ortho",))

UPSTREAM = {("nvidia", "Muon"): Muon, ("nvidia", "AdaptiveMuon"): AdaptiveMuon, ("nvidia", "Muown"): Muown,
            ("nvidia", "SOAP"): SOAP, ("nvidia", "MOSO"): MOSO, ("dion", "Muon"): DionMuon,
            ("dion", "NorMuon"): NorMuon, ("dion", "Dion2"): Dion2, ("dion", "NorDion2"): NorDion2}


def optimizer_class(rec):
    """The torch class or stand-in for a record (dion's Muon is told apart by `source`)."""
    if rec.cls in ("AdamW", "SGD", "Adam"):
        return getattr(torch.optim, rec.cls)
    return UPSTREAM[("dion" if "dion" in (rec.source or "") else "nvidia", rec.cls)]


class GPT(torch.nn.Module):
    """The GPT of shared/spec/models.md (nanoGPT naming, tied lm_head), tiny."""

    def __init__(self, V=32, T=8, C=16, L=2, H=2):
        super().__init__()
        nn = torch.nn
        self.H = H
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(V, C)
        self.transformer.wpe = nn.Embedding(T, C)
        self.transformer.h = nn.ModuleList()
        for _ in range(L):
            b = nn.Module()
            b.ln_1, b.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
            b.attn = nn.Module()
            b.attn.c_attn, b.attn.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            b.mlp = nn.Module()
            b.mlp.c_fc, b.mlp.c_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
            self.transformer.h.append(b)
        self.transformer.ln_f = nn.LayerNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        for n, p in self.named_parameters():
            if n.endswith("weight") and p.dim() == 2:
                torch.nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx, targets):
        B, t = idx.shape
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t))
        for b in self.transformer.h:
            q, k, v = b.attn.c_attn(b.ln_1(x)).split(x.size(-1), dim=2)
            q, k, v = (z.view(B, t, self.H, -1).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) / (k.size(-1) ** 0.5)
            att = att.masked_fill(torch.triu(torch.ones(t, t, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            x = x + b.attn.c_proj((att @ v).transpose(1, 2).reshape(B, t, -1))
            x = x + b.mlp.c_proj(torch.nn.functional.gelu(b.mlp.c_fc(b.ln_2(x)), approximate="tanh"))
        logits = self.lm_head(self.transformer.ln_f(x))
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def adamw_groups(model, lr=3e-3):
    """Two AdamW groups as nanoGPT makes them: decay on matrices, none on vectors."""
    params = list(model.named_parameters())
    return torch.optim.AdamW([
        {"params": [p for n, p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for n, p in params if p.dim() < 2], "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))


def batch(gen, V=32, B=4, T=8):
    idx = torch.randint(0, V, (B, T + 1), generator=gen)
    return idx[:, :-1], idx[:, 1:]


def named(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def run_eopt(*args):
    """Runs the eopt binary; returns (exit status, output)."""
    import subprocess
    p = subprocess.run([EOPT_BIN] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout
