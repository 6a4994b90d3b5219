"""dgprm — Dynamic and Generalizable Process Reward Modeling (Yin et al., ACL 2025)."""

__version__ = "0.1.0"
