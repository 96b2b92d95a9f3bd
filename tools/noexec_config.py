"""Write a copy of the book config with notebook execution switched off (for `make book-check`)."""
import sys
from pathlib import Path

import yaml

source, target = map(Path, sys.argv[1:3])
config = yaml.safe_load(source.read_text())
config.setdefault("execute", {})["execute_notebooks"] = "off"
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(yaml.safe_dump(config, sort_keys=False))
print(f"wrote {target} (execute_notebooks: off)")
