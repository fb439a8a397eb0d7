"""The checkout holds no leftovers of a merge: a conflict marker in a doc or a
module reads as text to rst and as a syntax error only sometimes."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = ("<<<<<<< ", ">>>>>>> ", "||||||| ")


DIRS = ("chatd", "tests", "docs", "etc", "scripts", "benchmarks", ".ci", "twisted")


def tracked_text_files():
    paths = [p for p in ROOT.iterdir() if p.is_file()]
    for d in DIRS:
        paths += [p for p in (ROOT / d).rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts]
    assert len(paths) > 100  # the checkout, not an empty directory
    for path in paths:
        try:
            yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary


def test_no_merge_conflict_markers():
    found = [f"{name}:{n}" for name, text in tracked_text_files()
             for n, line in enumerate(text.splitlines(), 1) if line.startswith(MARKERS)]
    assert found == []
