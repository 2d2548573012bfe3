"""The domain models, one module per domain. Importing this registers every table."""

from nubis.choices import Flooding, StrandStatus
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
    Health,
    Host,
    HostEvent,
    JoinToken,
    Location,
    Plane,
)
from nubis.models.engine import Semaphore, Strand
from nubis.models.image import Image, ImageState
from nubis.models.network import FirewallRule, Network, VniHold
from nubis.models.vm import (
    GONE,
    LEAVING,
    ON_HOST,
    ConsoleTicket,
    Nic,
    Subnet,
    Vm,
    VmEvent,
    VmLabel,
)
from nubis.roles import Role

__all__ = [
    "GONE",
    "LEAVING",
    "ON_HOST",
    "Allocation",
    "AllocationState",
    "ApiToken",
    "AuditEvent",
    "ConsoleTicket",
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
    "VmLabel",
    "VniHold",
]
