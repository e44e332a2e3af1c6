"""lionlib: Lion, Lion-K and their Lyapunov function, the companion to arXiv 2310.05898."""

from lionlib import kappa
from lionlib.optim import Lion, LionK, Muon

__all__ = ["kappa", "Lion", "LionK", "Muon"]
__version__ = "0.1.0"
