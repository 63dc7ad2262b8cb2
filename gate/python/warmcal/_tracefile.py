"""Where a trace goes and how it gets there, shared by every Python writer
of traces (the torch phase helper, the importers) and named as the C spool
converter names them (docs/formats.md): DIR/rank-<R>.h5, written under a
temporary name beside it, rank-<R>.h5.partial-XXXXXX, and renamed into place
only when the caller knows the run goes ahead. A name held by anything but a
regular file is never written over."""

import os
import secrets
import stat

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def trace_path(out_dir, rank):
    return os.path.join(out_dir, "rank-%d.h5" % rank)


def not_regular(path):
    """Why path cannot take a trace (it exists and is a folder, a link, a
    device...), or None when it is free or a regular file. Raises OSError
    when it cannot be looked at."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    return "exists and is not a regular file; a trace is never written over it"


def new_partial(final):
    """Create an empty file with a fresh temporary name beside final and
    return its path. Created as any new file is (0666 less the umask, where
    mkstemp would make it 0600 for good) and exclusively, so two writers
    never share one."""
    folder, base = os.path.split(final)
    while True:
        name = "%s.partial-%s" % (base, "".join(secrets.choice(_LETTERS) for _ in range(6)))
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
