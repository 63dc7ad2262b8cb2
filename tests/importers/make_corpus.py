#!/usr/bin/python3
"""Writes the importers' replay corpus: tests/fuzz/corpus/snapshot (pickles)
and tests/fuzz/corpus/import_csv (tables). Names say what the importer must
do: ok-* imports (exit 0), bad-* is refused (exit 2, one line); the test
(test_importers.py corpus) runs every file and also asserts the time and
memory bounds. Run again after changing the generators; deterministic.

usage: make_corpus.py [REPO]   (default: the repository holding this file)"""

import os
import pickle
import sys

import hostile
from snapshots import Allocator

repo = sys.argv[1] if len(sys.argv) > 1 else \
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
snap_dir = os.path.join(repo, "tests", "fuzz", "corpus", "snapshot")
csv_dir = os.path.join(repo, "tests", "fuzz", "corpus", "import_csv")
os.makedirs(snap_dir, exist_ok=True)
os.makedirs(csv_dir, exist_ok=True)


def write(folder, name, data):
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


seeds = {}
for version, seed in (("2.0", 1), ("2.1", 2), ("2.6", 3)):
    a = Allocator(seed, version)
    a.run_pass(60, 1 << 20)
    seeds[version] = pickle.dumps(a.snapshot(), protocol=2 if version == "2.0" else 4)
    write(snap_dir, "ok-v%s.pickle" % version, seeds[version])
a = Allocator(4, "2.6")
a.annotate("warmcal tokens=256 batch=1 label=context", "START")
a.run_pass(40, 1 << 20)
a.annotate("warmcal tokens=256 batch=1 label=context", "END")
write(snap_dir, "ok-annotated.pickle", pickle.dumps(a.snapshot(), protocol=4))
# PyTorch shares frame lists and frame dicts among entries: allowed
a = Allocator(5, "2.1")
a.run_pass(60, 1 << 20)
snap = a.snapshot()
frames = [{"filename": "model.py", "line": n, "name": "forward"} for n in range(30)]
for e in snap["device_traces"][0]:
    e["frames"] = frames
write(snap_dir, "ok-shared-frames.pickle", pickle.dumps(snap, protocol=4))
# the annotation ring lost the oldest START: a warning, not an error
a = Allocator(6, "2.6")
for tokens in (256, 512):
    a.annotate("warmcal tokens=%d" % tokens, "START")
    a.run_pass(30, 1 << 20)
    a.annotate("warmcal tokens=%d" % tokens, "END")
snap = a.snapshot()
del snap["external_annotations"][0]
write(snap_dir, "ok-annotation-start-lost.pickle", pickle.dumps(snap, protocol=4))

data = seeds["2.1"]
for n in (1, 2, len(data) // 2, len(data) - 1):
    write(snap_dir, "bad-truncated-%d.pickle" % n, data[:n])
write(snap_dir, "bad-empty.pickle", b"")
write(snap_dir, "bad-memo-index.pickle", b"\x80\x02]r\xff\xff\xff\x7f.")
write(snap_dir, "bad-global.pickle", b"cos\nsystem\n(S'echo x'\ntR.")
write(snap_dir, "bad-stack-global.pickle", b"\x80\x04\x95\x22\x00\x00\x00\x00\x00\x00\x00"
      b"\x8c\x08builtins\x94\x8c\x05print\x94\x93\x94\x8c\x01x\x94\x85\x94R\x94.")
write(snap_dir, "bad-bytes8-length.pickle", b"\x80\x05\x8e" + (1 << 62).to_bytes(8, "little")
      + b"abcd")
write(snap_dir, "bad-segments-only.pickle", pickle.dumps([], protocol=2))
write(snap_dir, "bad-top-level-int.pickle", pickle.dumps(5, protocol=2))
# the review's resource shapes, small (the test builds them large)
write(snap_dir, "bad-laughs.pickle", hostile.laughs(20, 2000))
write(snap_dir, "bad-laughs-one-device.pickle", hostile.laughs(1, 5000))
write(snap_dir, "bad-deep-lists.pickle", hostile.deep_lists(20000))
write(snap_dir, "bad-deep-dicts.pickle", hostile.deep_dicts(5000))
write(snap_dir, "bad-deep-memo.pickle", hostile.deep_memo(5000))
write(snap_dir, "bad-empty-dicts.pickle", hostile.empty_dicts(200000))
write(snap_dir, "bad-wide-integer.pickle", hostile.wide_integer(4096))
write(snap_dir, "bad-decimal-integer.pickle", hostile.decimal_integer(5000))

head = "rank,label,tokens,batch,peak_bytes"
write(csv_dir, "ok-plain.csv", head + "\n0,context,512,1,1000\n1,context,1024,2,2000\n")
write(csv_dir, "ok-free.csv", head + ",free_before,free_after,outcome\n"
      "0,context,512,1,1000,9000,8000,ok\n0,context,1024,1,2000,,,oom\n")
write(csv_dir, "ok-crlf-bom.csv", "\ufeff" + head + "\r\n0,context,512,1,1000\r\n\r\n")
write(csv_dir, "ok-quoted-newline-number.csv", head + '\n0,context,"512\n",1,1000\n')
write(csv_dir, "bad-quoted-newline-label.csv", head + '\n0,"con\ntext",512,1,1000\n')
write(csv_dir, "bad-nel.csv", head + "\n0,a\x85b,512,1,1000\n")
write(csv_dir, "bad-unterminated-quote.csv", head + '\n0,"context,512,1,1000\n')
write(csv_dir, "bad-not-utf8.csv", (head + "\n0,cont").encode() + b"\xff" + b"ext,5,1,9\n")
write(csv_dir, "bad-empty.csv", "")
write(csv_dir, "bad-header-only.csv", head + "\n")
write(csv_dir, "bad-fields.csv", head + "\n0,context,5,1\n")
write(csv_dir, "bad-nul.csv", head + "\n0,context\x00,5,1,9\n")
write(csv_dir, "bad-pickle-as-csv.csv", seeds["2.1"][:4096])
print("corpus written to", snap_dir, "and", csv_dir)
