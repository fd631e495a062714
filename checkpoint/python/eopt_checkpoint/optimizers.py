"""Constructor arguments that torch's `state_dict()` omits, read from live optimizer objects.

The upstream packages need not be installed: a class is recognised by its name and the module
it comes from (NVIDIA-NeMo/Emerging-Optimizers lives in `emerging_optimizers.*`, microsoft/dion
in `dion.*`), and the values are read from the instance attributes the specs list
(shared/spec/algorithms/*.md). Values that upstream keeps only inside a closure are read from
that closure's cells where the closure names them; the caller's explicit mapping overrides or
completes all of this.
"""
import functools
from collections import OrderedDict

# Instance attributes that hold a constructor argument under the argument's own name, or
# (argument, attribute) where the names differ.
_NVIDIA_ORTHO = ("fp32_matmul_prec", "nesterov", "weight_decay_method")
_MUON_CLOSURE = ("coefficient_type", "num_ns_steps", "scale_mode", "extra_scale_factor", "use_syrk")

_NVIDIA = {
    "Muon": dict(attrs=_NVIDIA_ORTHO, closure=_MUON_CLOSURE),
    "AdaptiveMuon": dict(attrs=_NVIDIA_ORTHO + ("scale_mode", "extra_scale_factor", "moment2_method"),
                         closure=("coefficient_type", "num_ns_steps")),
    "Muown": dict(attrs=("betas", "adam_eps", "fp32_matmul_prec"), closure=_MUON_CLOSURE),
    # correct_shampoo_beta_bias is resolved at construction (None -> correct_bias), so it is
    # written only when the caller passes it explicitly (soap-moso.md §9).
    "SOAP": dict(attrs=("weight_decay_method", "nesterov", "precondition_frequency", "adam_warmup_steps",
                        "correct_bias", "use_eigh", "fp32_matmul_prec", "qr_fp32_matmul_prec",
                        "use_adaptive_criteria", "adaptive_update_tolerance", "power_iter_steps",
                        "max_update_rms", "use_kl_shampoo"), closure=()),
    "MOSO": dict(attrs=("max_update_rms",), closure=()),
}
_DION_BASE = (("softening", "_softening"),)
_DION = {
    "Muon": dict(attrs=_DION_BASE),
    "NorMuon": dict(attrs=_DION_BASE),
    "Dion2": dict(attrs=_DION_BASE + (("verbose", "verbose"), ("triton_post_ortho", "_triton_post_ortho"))),
    "NorDion2": dict(attrs=_DION_BASE + (("triton_post_ortho", "_triton_post_ortho"),)),
}
# dion keeps only the orthogonaliser it picked (megabatch_base.py); its name gives back the
# flags (use_polar_express, use_triton, use_gram_newton_schulz). The gram variant is a lambda
# over `_gns` that forces use_polar_express and hides use_triton (pass it explicitly).
_DION_ORTHO = {
    "polar_express": (1, 0, 0),
    "polar_express_triton": (1, 1, 0),
    "newton_schulz_triton": (0, 1, 0),
    "zeropower_via_newtonschulz5": (0, 0, 0),
}

# What a file written from torch's own classes says in `source`.
TORCH_SOURCE = "torch.optim"


def family(opt):
    """'torch', 'nvidia', 'dion' or None for an optimizer object (duck typing on the module)."""
    module = type(opt).__module__ or ""
    top = module.split(".")[0]
    if top == "torch":
        return "torch"
    if top == "emerging_optimizers" and type(opt).__name__ in _NVIDIA:
        return "nvidia"
    if top == "dion" and type(opt).__name__ in _DION:
        return "dion"
    return None


def closure_values(fn):
    """The free variables a Python closure captured, by name (functools.partial keywords too)."""
    if isinstance(fn, functools.partial):
        return dict(fn.keywords or {})
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None)
    if code is None or not cells:
        return {}
    out = {}
    for name, cell in zip(code.co_freevars, cells):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    return out


def _dion_ortho_flags(opt):
    fn = getattr(opt, "_newton_schulz_func", None)
    if getattr(opt, "_softening", 0) and fn is not None:  # the softening wrapper closes over the base
        fn = closure_values(fn).get("newton_schulz_func", fn)
    if fn is None:
        return {}
    name = getattr(fn, "__name__", "")
    if name == "<lambda>" and "_gns" in closure_values(fn):  # use_triton is not recoverable here
        return OrderedDict(use_polar_express=True, use_gram_newton_schulz=True)
    if name in _DION_ORTHO:
        pe, tr, gram = _DION_ORTHO[name]
        return OrderedDict(use_polar_express=bool(pe), use_triton=bool(tr), use_gram_newton_schulz=bool(gram))
    return {}


def _python_value(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        return v
    if isinstance(v, (tuple, list)):
        return tuple(v)
    if hasattr(v, "item"):  # numpy / torch scalars
        return v.item()
    return v


def constructor_args(opt, explicit=None):
    """The constructor arguments of `opt` that are not param-group keys, as an ordered dict.

    Recognised upstream classes contribute the values their instance (and closure) keep;
    `explicit` overrides or completes them. Raises ValueError when a value the C side needs
    cannot be found, naming the argument (pass it in `explicit`)."""
    explicit = dict(explicit or {})
    fam, cls = family(opt), type(opt).__name__
    args = OrderedDict()
    needed = ()
    if fam == "nvidia":
        spec = _NVIDIA[cls]
        for name in spec["attrs"]:
            if hasattr(opt, name):
                args[name] = getattr(opt, name)
        cells = closure_values(getattr(opt, "scaled_orthogonalize_fn", None))
        for name in spec["closure"]:
            if name in cells:
                args[name] = cells[name]
        needed = tuple(spec["attrs"]) + tuple(spec["closure"])
        if cls == "SOAP" and callable(explicit.get("precondition_frequency", args.get("precondition_frequency"))):
            raise ValueError("SOAP: a callable precondition_frequency cannot be stored in a checkpoint")
    elif fam == "dion":
        defaults = getattr(opt, "defaults", {})
        if "beta1" in defaults and "beta2" in defaults:
            args["betas"] = (defaults["beta1"], defaults["beta2"])
        for name, attr in _DION[cls]["attrs"]:
            if hasattr(opt, attr):
                args[name] = getattr(opt, attr)
        args.update(_dion_ortho_flags(opt))
        needed = ("betas", "use_polar_express", "use_triton", "use_gram_newton_schulz") + tuple(
            n for n, _ in _DION[cls]["attrs"])
    args.update(explicit)
    missing = [n for n in needed if n not in args]
    if missing:
        raise ValueError("%s.%s: cannot find constructor argument(s) %s on the instance; pass them explicitly"
                         % (type(opt).__module__, cls, ", ".join(missing)))
    return OrderedDict((k, _python_value(v)) for k, v in args.items())


_REPOSITORY = {"nvidia": "NVIDIA-NeMo/Emerging-Optimizers", "dion": "microsoft/dion"}


def default_source(opt):
    """Free text for the `source` attribute: repository, module and class, with the package
    version where it has one. The C side tells dion's Muon from NVIDIA's by this text."""
    module = type(opt).__module__ or ""
    top = module.split(".")[0]
    if top == "torch":
        return "%s.%s" % (TORCH_SOURCE, type(opt).__name__)
    import sys
    version = getattr(sys.modules.get(top), "__version__", None)
    repo = _REPOSITORY.get(family(opt))
    return "%s%s.%s%s" % (repo + ": " if repo else "", module, type(opt).__qualname__,
                          " (%s %s)" % (top, version) if version else "")
