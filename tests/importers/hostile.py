"""Pickles made to exhaust a reader rather than to run code: the shapes the
review of the snapshot importer found (issue 10), at any size. Each returns
the bytes of a file; the importer must refuse every one quickly with one
line, whatever the size. The corpus under tests/fuzz/corpus/snapshot holds
small ones (make_corpus.py); test_importers.py builds them at the sizes that
once took gigabytes or minutes."""

import pickle
import struct

PROTO4 = b"\x80\x04"


def laughs(devices, refs):
    """One entry dict referenced refs times by one list, that list by every
    device: a few bytes per reference, devices x refs entries once walked."""
    entry = {"action": "alloc", "addr": 1, "size": 1, "time_us": 1}
    trace = [entry] * refs
    return pickle.dumps({"segments": [], "device_traces": [trace] * devices}, protocol=4)


def deep_lists(levels):
    """Lists nested `levels` deep, built on the unpickler's stack."""
    return PROTO4 + b"]" * levels + b"a" * (levels - 1) + b"."


def deep_dicts(levels):
    """{'kkkkkkkk': {'kkkkkkkk': ... {}}}, `levels` deep: few objects per byte."""
    return PROTO4 + b"(\x8c\x08kkkkkkkk" * levels + b"}" + b"d" * levels + b"."


def deep_memo(levels):
    """Lists nested `levels` deep through the memo with a stack of constant
    height: each new list gets the previous one back (LONG_BINGET) and
    appends it."""
    out = [PROTO4, b"]\x94"]                       # list 0, memo 0
    for i in range(1, levels):
        out.append(b"]\x94j" + struct.pack("<I", i - 1) + b"a0")  # new, get prev, append, pop
    out.append(b"j" + struct.pack("<I", levels - 1) + b".")
    return b"".join(out)


def empty_dicts(count):
    """A list of `count` empty dicts: one byte each, ~70 in memory."""
    return PROTO4 + b"](" + b"}" * count + b"e."


def wide_integer(nbytes):
    """One LONG4 integer `nbytes` wide."""
    return PROTO4 + b"\x8b" + struct.pack("<i", nbytes) + b"\x01" * nbytes + b"."


def decimal_integer(digits):
    """A protocol-0 LONG of `digits` decimal digits."""
    return b"L" + b"9" * digits + b"L\n."
