"""`python3 -m warmcal.importers SUBCOMMAND ...`, which `warmcal import` runs.
Exit 0 when every trace was written, 2 on bad usage or bad input (one line on
stderr naming the file and the field, line or column); written trace paths
on stdout, warnings on stderr."""

from __future__ import annotations  # annotations stay strings: no cost at import

import argparse
import sys
from typing import TYPE_CHECKING

from . import _common
from ._common import InputError
from ._progress import Progress

if TYPE_CHECKING:
    from collections.abc import Sequence

PROG: str = "warmcal import"

EPILOG: str = """examples:
  warmcal import torch-snapshot warmup-512.pickle warmup-4096.pickle --tokens 512 \\
      --tokens 4096 --model my-model --rank 0 --world-size 4 -o traces/
  warmcal import csv measurements.csv --model my-model --producer vllm-log -o traces/

CSV columns (header row required, any order): rank,label,tokens,batch,peak_bytes
and optionally free_before,free_after,outcome (ok|oom|aborted). docs/formats.md
describes both formats and how they map onto a trace."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, exit 2, like every warmcal command
        sys.stderr.write("%s: %s (see '%s --help')\n" % (self.prog, message, PROG))
        sys.exit(2)


def _int_in(lo, hi, what):
    def parse(text):
        if not text.isdigit() or not lo <= int(text) <= hi:
            raise argparse.ArgumentTypeError("expected %s (%d to %d), found '%s'"
                                             % (what, lo, hi, text))
        return int(text)
    return parse


def _parser():
    p = _Parser(prog=PROG, description="Write warmcal traces (source = import) from "
                "measurements other tools made.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("torch-snapshot", prog=PROG + " torch-snapshot",
                       help="PyTorch memory snapshots (torch.cuda.memory._dump_snapshot)",
                       description="One trace, DIR/rank-R.h5, from PyTorch memory snapshots: one "
                       "phase per file (its tokens from --tokens, in file order), or one phase "
                       "per 'warmcal tokens=N batch=B label=L' annotation the snapshot holds.")
    s.add_argument("snapshots", nargs="+", metavar="SNAPSHOT.pickle")
    s.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created)")
    s.add_argument("--tokens", action="append", default=[], metavar="N",
                   type=_int_in(1, _common.TOKENS_MAX, "a token count"),
                   help="tokens of the next file without phase annotations (repeat per file)")
    s.add_argument("--batch", action="append", default=[], metavar="B",
                   type=_int_in(1, _common.U32_MAX, "a batch size"),
                   help="batch size: once for every file, or once per --tokens (default 1)")
    s.add_argument("--label", metavar="L", help="label of per-file phases (default context)")
    s.add_argument("--rank", type=_int_in(0, 2**31 - 2, "a rank"), default=0, metavar="R")
    s.add_argument("--world-size", type=_int_in(1, 2**31 - 1, "a world size"), default=1,
                   metavar="W")
    s.add_argument("--model", default="unknown", metavar="M", help="model name in the trace")
    s.add_argument("--device", type=_int_in(0, 1 << 16, "a device index"), metavar="D",
                   help="the device whose history to read (default: the only one with history)")
    s.add_argument("--max-entries", type=_int_in(1, 1 << 62, "an entry count"), metavar="N",
                   help="the max_entries given to _record_memory_history: a history this long "
                   "filled its ring and lost its oldest entries")
    s.add_argument("--max-input-bytes", type=_int_in(1, 1 << 62, "a byte count"),
                   metavar="BYTES", help="largest snapshot read (default 512 MiB); also "
                   "bounds the objects one may build (one per 16 bytes of it)")

    c = sub.add_parser("csv", prog=PROG + " csv", help="a table of measured peaks",
                       description="One trace per rank, DIR/rank-R.h5, from a CSV table with "
                       "columns rank,label,tokens,batch,peak_bytes[,free_before,free_after,"
                       "outcome].")
    c.add_argument("table", metavar="FILE.csv")
    c.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (created)")
    c.add_argument("--model", default="unknown", metavar="M", help="model name in the traces")
    c.add_argument("--producer", default="csv", metavar="P",
                   help="the tool that made the numbers (attribute 'producer'; default csv)")
    c.add_argument("--world-size", type=_int_in(1, 2**31 - 1, "a world size"), metavar="W",
                   help="default: the largest rank in the table + 1")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    progress = Progress()  # stderr, when it is a terminal (or WARMCAL_PROGRESS=1)
    try:
        return _run(args, progress)
    finally:
        progress.clear()


def _run(args, progress):
    try:
        if args.command == "torch-snapshot":
            from . import torch_snapshot
            if args.rank >= args.world_size:
                raise InputError("--rank %d: expected below --world-size %d"
                                 % (args.rank, args.world_size))
            trace, notes = torch_snapshot.build_trace(
                args.snapshots, args.tokens, args.batch, args.label, args.rank, args.world_size,
                args.model, args.device, args.max_entries,
                args.max_input_bytes or torch_snapshot.DEFAULT_MAX_INPUT_BYTES, progress)
            traces = [trace]
        else:
            from . import csv_import
            progress.show("warmcal import: reading %s" % args.table)
            traces = csv_import.build_traces(args.table, args.model, args.producer,
                                             args.world_size)
            notes = []
        progress.clear()
        for note in notes:
            sys.stderr.write("%s: warning: %s\n" % (PROG, note))
        paths = _common.write_traces(args.out, traces, progress)
        progress.clear()
        for path in paths:
            print(path)
    except InputError as e:
        progress.clear()
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 2
    except ImportError as e:  # the trace library was not found: says where it looked
        progress.clear()
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
