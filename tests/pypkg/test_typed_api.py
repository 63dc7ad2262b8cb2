"""The package ships py.typed, so its public Python API must carry type
hints: every public function and method (defined in the module, name
without a leading underscore, public methods of public classes, and the
constructor __init__ of a public class, whose parameters are public too)
has an annotation for every parameter but self/cls, *args and **kwargs
included, and for its return; and every annotation resolves.

Annotations are strings (from __future__ import annotations) naming types
imported under `if TYPE_CHECKING:` only, so they are resolved here in the
module's namespace plus what its top-level TYPE_CHECKING blocks define:
typing.get_type_hints then fails on a name no type checker would find
either.

    test_typed_api.py

Needs PYTHONPATH to reach the package; never loads the C libraries
(importing warmcal does not, and nothing here calls into them). Exit 0 with
a one-line summary, 1 listing each gap as module.qualname: param (or
: return).
"""

import ast
import importlib
import inspect
import sys
import typing

MODULES = ["warmcal", "warmcal.gate", "warmcal.profile", "warmcal.importers.csv_import",
           "warmcal.importers.torch_snapshot", "warmcal.importers.__main__"]
# modules that define public callables: one that yields none means the walk
# below broke, not that the module is annotated
MUST_HAVE_CALLABLES = MODULES[1:]


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def annotation_namespace(module):
    """The module's globals plus what its top-level `if TYPE_CHECKING:`
    blocks import or define (only imports of the standard library and type
    aliases, by the package's rule: cheap, and no C library)."""
    ns = dict(vars(module))
    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            code = compile(ast.Module(body=node.body, type_ignores=[]),
                           module.__file__, "exec")
            exec(code, ns)
    return ns


def check_callable(fn, label, ns, skip_first, gaps):
    """Append to gaps each parameter (but a method's self/cls) and the
    return that fn leaves unannotated, as 'label: what'."""
    try:
        hints = typing.get_type_hints(fn, globalns=ns)
    except Exception as e:  # a name that does not resolve, a syntax error
        gaps.append("%s: annotations do not resolve (%s: %s)" % (label, type(e).__name__, e))
        return
    params = list(inspect.signature(fn).parameters.values())
    if skip_first and params:
        params = params[1:]
    for p in params:
        if p.name not in hints:
            prefix = ("*" if p.kind is p.VAR_POSITIONAL else
                      "**" if p.kind is p.VAR_KEYWORD else "")
            gaps.append("%s: %s%s" % (label, prefix, p.name))
    if "return" not in hints:
        gaps.append("%s: return" % label)


def class_members(cls):
    """(name, function, skip_first) for the public methods, properties and
    the constructor defined in cls itself (inherited ones are checked where
    they are defined)."""
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if isinstance(member, staticmethod):
            yield name, member.__func__, False
        elif isinstance(member, classmethod):
            yield name, member.__func__, True
        elif isinstance(member, property):
            for part, fn in (("fget", member.fget), ("fset", member.fset),
                             ("fdel", member.fdel)):
                if fn is not None:
                    yield "%s.%s" % (name, part), fn, True
        elif inspect.isfunction(member) and member.__module__ == cls.__module__:
            # not a namedtuple's generated __init__ and the like
            yield name, member, True


def check_module(module, gaps):
    """Check the public callables module defines; returns how many."""
    ns = annotation_namespace(module)
    checked = 0
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue  # private, or imported from elsewhere (checked there)
        if inspect.isfunction(obj):
            check_callable(obj, "%s.%s" % (module.__name__, obj.__qualname__), ns, False, gaps)
            checked += 1
        elif inspect.isclass(obj):
            for member, fn, skip_first in class_members(obj):
                check_callable(fn, "%s.%s.%s" % (module.__name__, obj.__qualname__, member),
                               ns, skip_first, gaps)
                checked += 1
    return checked


def _self_test():
    """The checker must see a gap: a function without annotations, and one
    whose annotation names nothing."""
    def bare(a, *rest, b=1, **kw):
        return a

    def dangling(a: "NoSuchType") -> int:  # noqa: F821
        return 0

    gaps = []
    check_callable(bare, "bare", {}, False, gaps)
    check_callable(dangling, "dangling", {"__builtins__": __builtins__}, False, gaps)
    expected = ["bare: a", "bare: *rest", "bare: b", "bare: **kw", "bare: return"]
    if gaps[:5] != expected or len(gaps) != 6 or "do not resolve" not in gaps[5]:
        sys.exit("test_typed_api: the checker itself is broken: %r" % gaps)


def main():
    _self_test()
    gaps, total = [], 0
    for name in MODULES:
        module = importlib.import_module(name)
        n = check_module(module, gaps)
        if n == 0 and name in MUST_HAVE_CALLABLES:
            gaps.append("%s: no public callables found (the walk is broken)" % name)
        total += n
    if gaps:
        for gap in gaps:
            print(gap, file=sys.stderr)
        print("test_typed_api: %d gap(s) in the public API's type hints (%d callables checked "
              "in %d modules)" % (len(gaps), total, len(MODULES)), file=sys.stderr)
        return 1
    print("test_typed_api: %d public callables in %d modules fully annotated"
          % (total, len(MODULES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
