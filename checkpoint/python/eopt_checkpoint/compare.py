"""Content equality of two HDF5 files: every group, dataset and attribute, with its HDF5 type
class, width, string encoding and value, and which names are hard links to one object."""
import h5py
import numpy as np


def _type(dt, tid):
    s = h5py.check_string_dtype(dt)
    if s is not None:
        return ("string", "vlen" if s.length is None else "fixed", tid.get_cset())
    return ("numeric", dt.str)


def _value(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.dtype == object:
        return [x.decode("utf-8") if isinstance(x, bytes) else x for x in v.ravel()]
    return v


def _same(a, b):
    a, b = _value(a), _value(b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, (float, np.floating)) and isinstance(b, (float, np.floating)):
        return np.asarray(a).tobytes() == np.asarray(b).tobytes()  # bitwise, NaN included
    return a == b


def _attrs(where, x, y, out):
    ka, kb = set(x.attrs), set(y.attrs)
    for k in sorted(ka ^ kb):
        out.append("%s@%s: only in %s" % (where, k, "first" if k in ka else "second"))
    for k in sorted(ka & kb):
        ia, ib = x.attrs.get_id(k), y.attrs.get_id(k)
        ta, tb = _type(ia.dtype, ia.get_type()), _type(ib.dtype, ib.get_type())
        if ta != tb or ia.shape != ib.shape:
            out.append("%s@%s: type %s %s vs %s %s" % (where, k, ta, ia.shape, tb, ib.shape))
        elif not _same(x.attrs[k], y.attrs[k]):
            out.append("%s@%s: %r vs %r" % (where, k, x.attrs[k], y.attrs[k]))


def _links(f):
    """Sets of names that are one object (hard links), as frozensets of paths."""
    objs = {}
    f.visititems(lambda name, obj: objs.setdefault(h5py.h5o.get_info(obj.id).addr, set()).add("/" + name))
    return {frozenset(v) for v in objs.values() if len(v) > 1}


def diff(path_a, path_b):
    """A list of differences (empty when the files hold the same content)."""
    out = []
    with h5py.File(path_a, "r") as a, h5py.File(path_b, "r") as b:
        def walk(where, x, y):
            _attrs(where, x, y, out)
            if isinstance(x, h5py.Dataset):
                ta, tb = _type(x.dtype, x.id.get_type()), _type(y.dtype, y.id.get_type())
                if ta != tb or x.shape != y.shape:
                    out.append("%s: dataset %s %s vs %s %s" % (where, ta, x.shape, tb, y.shape))
                elif not _same(x[()], y[()]):
                    out.append("%s: values differ" % where)
                return
            ka, kb = set(x), set(y)
            for k in sorted(ka ^ kb):
                out.append("%s/%s: only in %s" % (where.rstrip("/"), k, "first" if k in ka else "second"))
            for k in sorted(ka & kb):
                cx, cy = x.get(k, getlink=True), y.get(k, getlink=True)
                if type(cx) != type(cy):
                    out.append("%s/%s: link kinds differ" % (where.rstrip("/"), k))
                    continue
                ox, oy = x[k], y[k]
                if isinstance(ox, h5py.Group) != isinstance(oy, h5py.Group):
                    out.append("%s/%s: group vs dataset" % (where.rstrip("/"), k))
                else:
                    walk(where.rstrip("/") + "/" + k, ox, oy)
        walk("/", a, b)
        la, lb = _links(a), _links(b)
        for s in sorted(la ^ lb, key=sorted):
            out.append("hard links %s: only in %s" % (sorted(s), "first" if s in la else "second"))
    return out
