"""``pie-retriever eval ieb --check DIR``: is an IEB folder complete (the four public files, readable, the expected
shape), and where to get what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from pie_retriever.pool.ieb import EFT_TEST, EFT_TRAIN_UNSUP, IFT_TEST, IIS_TEST

#: Where the files come from: the benchmark's public repository, its ``data/`` folder.
IEB_SOURCE = "https://github.com/Yiwei98/instruction-embedding-benchmark (folder data/)"

#: file -> (JSON type, what reads it, sha256 prefix of the version every figure in the docs was measured on)
IEB_FILES: dict[str, tuple[type, str, str]] = {
    EFT_TEST: (dict, "eval ieb, bench (held-out: evaluation only)", "d5bc096b"),
    IIS_TEST: (list, "eval ieb (held-out: evaluation only)", "ec7f0496"),
    IFT_TEST: (dict, "train, bench, label agreement", "dafa559b"),
    EFT_TRAIN_UNSUP: (list, "train", "888275d5"),
}


def _status(path: Path, kind: type, sha_prefix: str) -> tuple[bool, str]:
    """``(usable, note)`` of one file."""
    if not path.is_file():
        return False, "missing"
    data = path.read_bytes()
    try:
        value = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        return False, f"not readable JSON ({exc})"
    if not isinstance(value, kind):
        return False, f"a JSON {type(value).__name__}, expected a JSON {'object' if kind is dict else 'list'}"
    digest = hashlib.sha256(data).hexdigest()
    same = "" if digest.startswith(sha_prefix) else f"; sha256 {digest[:8]} differs from the measured version's {sha_prefix}"
    return True, f"ok, {len(value):,} {'labels' if kind is dict else 'entries'}{same}"


def check_ieb_folder(folder: str | os.PathLike | None) -> int:
    """Print one line per IEB file of ``folder`` (``$PIE_IEB_DIR`` when None); 0 when all four are usable, else 1."""
    from pie_retriever.evaluation.ieb import IEB_ENV

    value = folder or os.environ.get(IEB_ENV)
    if not value:
        print(f"No IEB folder given: pass --check DIR or set {IEB_ENV}. Get the files from {IEB_SOURCE}.", file=sys.stderr)
        return 1
    root = Path(value).expanduser()
    bad = 0
    for name, (kind, used_by, sha) in IEB_FILES.items():
        ok, note = _status(root / name, kind, sha)
        bad += not ok
        print(f"{'ok ' if ok else 'BAD'} {root / name}: {note} (read by {used_by})")
    if bad:
        print(f"{bad} of {len(IEB_FILES)} IEB files missing or unreadable in {root}; download them from {IEB_SOURCE}.",
              file=sys.stderr)
        return 1
    print(f"{root} is a complete IEB folder.", file=sys.stderr)
    return 0
