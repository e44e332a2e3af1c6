"""lionlib: Lion, Lion-K and their Lyapunov function, the companion to arXiv 2310.05898."""

from lionlib import kappa
from lionlib.muon import Muon, muon_groups
from lionlib.optim import Lion, LionK

__all__ = ["kappa", "Lion", "LionK", "Muon", "muon_groups"]
__version__ = "0.1.0"
