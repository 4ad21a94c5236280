"""clockd: fingerprint time-clock ingestion and village-attendance reporting."""

__version__ = "0.1.0"
