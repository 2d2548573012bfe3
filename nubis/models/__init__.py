"""The domain models, one module per domain. Importing this registers every table."""

from nubis.models.engine import Semaphore, Strand, StrandStatus

__all__ = ["Semaphore", "Strand", "StrandStatus"]
