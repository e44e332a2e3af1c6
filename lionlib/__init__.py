"""lionlib: Lion, Lion-K and their Lyapunov function, the companion to arXiv 2310.05898."""

from lionlib import kappa

__all__ = ["kappa"]
__version__ = "0.1.0"
