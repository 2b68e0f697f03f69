import sys
from pathlib import Path

# The support helpers live next to the tests; the package itself is installed (-e).
sys.path.insert(0, str(Path(__file__).resolve().parent))
