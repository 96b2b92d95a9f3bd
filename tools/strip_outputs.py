"""Strip outputs, execution counts and widget state from every notebook under the given folders."""
import sys
from pathlib import Path

import nbformat


def strip(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after)
        return True
    return False


if __name__ == "__main__":
    for folder in sys.argv[1:] or ["book"]:
        for path in sorted(Path(folder).rglob("*.ipynb")):
            if ".ipynb_checkpoints" not in path.parts and strip(path):
                print("stripped", path)
