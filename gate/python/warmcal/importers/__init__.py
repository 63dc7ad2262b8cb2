"""Importers: traces from measurements people already have.

`python3 -m warmcal.importers torch-snapshot ...` reads the pickles that
torch.cuda.memory._dump_snapshot writes; `... csv ...` reads a table of
measured peaks. Both write one trace per rank through the project's one trace
writer (warmcal._trace, the C library), with source = "import". The
`warmcal import` command of the C command line hands over to this package.
"""

from ._common import InputError

__all__ = ["InputError"]
