"""Where the project keeps shipped raw data and prepared datasets."""
import os
import pathlib

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED_RAW_DIR = REPO_ROOT / "data" / "raw"


def prepared_root() -> pathlib.Path:
    """Root of prepared datasets: $P5_DATA_DIR, else `prepared/` in the repository."""
    return pathlib.Path(os.environ.get("P5_DATA_DIR", REPO_ROOT / "prepared"))
