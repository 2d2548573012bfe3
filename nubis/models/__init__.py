"""The domain models, one module per domain. Importing this registers every table."""

from nubis.auth.roles import Role
from nubis.models.account import (
    ApiToken,
    AuditEvent,
    IdempotentRequest,
    Invitation,
    LoginThrottle,
    Membership,
    Project,
    SshKey,
    User,
)
from nubis.models.compute import (
    Allocation,
    AllocationState,
    Flooding,
    Health,
    Host,
    HostEvent,
    JoinToken,
    Location,
    Plane,
)
from nubis.models.engine import Semaphore, Strand, StrandStatus
from nubis.models.image import Image, ImageState
from nubis.models.network import FirewallRule, Network, VniHold
from nubis.models.vm import Nic, Subnet, Vm, VmEvent

__all__ = [
    "Allocation",
    "AllocationState",
    "ApiToken",
    "AuditEvent",
    "FirewallRule",
    "Flooding",
    "Health",
    "Host",
    "HostEvent",
    "IdempotentRequest",
    "Image",
    "ImageState",
    "Invitation",
    "JoinToken",
    "Location",
    "LoginThrottle",
    "Membership",
    "Network",
    "Nic",
    "Plane",
    "Project",
    "Role",
    "Semaphore",
    "SshKey",
    "Strand",
    "StrandStatus",
    "Subnet",
    "User",
    "Vm",
    "VmEvent",
    "VniHold",
]
