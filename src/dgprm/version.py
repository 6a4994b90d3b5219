"""The version of dgprm (read by packaging and recorded in every manifest)."""

__version__ = "0.1.0"
