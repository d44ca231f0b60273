"""NRI (Node Resource Interface) for pycrio: see docs/nri.md."""
