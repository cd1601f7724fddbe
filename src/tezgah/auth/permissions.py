"""Workspace roles and the permissions each one grants.

Routes ask for a permission (``require("designs:write")``), never for a role, so a role can be
reshaped here without touching a route. API keys carry scopes from the same vocabulary and can
never exceed the role of the user who created them.
"""

from __future__ import annotations

from enum import StrEnum

from tezgah.core.i18n import N_


class Role(StrEnum):
    owner = "owner"
    admin = "admin"
    engineer = "engineer"
    operator = "operator"
    viewer = "viewer"


# Names of roles as people read them (translated where shown, e.g. in invitation mails).
ROLE_LABELS: dict[str, str] = {
    "owner": N_("owner"),
    "admin": N_("admin"),
    "engineer": N_("engineer"),
    "operator": N_("operator"),
    "viewer": N_("viewer"),
}


class Permission(StrEnum):
    workspace_read = "workspace:read"
    workspace_manage = "workspace:manage"
    workspace_delete = "workspace:delete"
    members_read = "members:read"
    members_manage = "members:manage"
    designs_read = "designs:read"
    designs_write = "designs:write"
    reviews_write = "reviews:write"
    cam_read = "cam:read"
    cam_run = "cam:run"
    machines_manage = "machines:manage"
    keys_manage = "keys:manage"
    audit_read = "audit:read"


_VIEWER = frozenset(
    {
        Permission.workspace_read,
        Permission.members_read,
        Permission.designs_read,
        Permission.cam_read,
        Permission.reviews_write,
    }
)
_OPERATOR = _VIEWER | {Permission.cam_run}
_ENGINEER = _OPERATOR | {Permission.designs_write, Permission.machines_manage}
_ADMIN = _ENGINEER | {
    Permission.members_manage,
    Permission.keys_manage,
    Permission.workspace_manage,
}
_OWNER = _ADMIN | {Permission.workspace_delete, Permission.audit_read}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.viewer: _VIEWER,
    Role.operator: frozenset(_OPERATOR),
    Role.engineer: frozenset(_ENGINEER),
    Role.admin: frozenset(_ADMIN),
    Role.owner: frozenset(_OWNER),
}
# Ranks decide who may grant what: nobody hands out a role above their own.
ROLE_RANK: dict[Role, int] = {
    Role.viewer: 1,
    Role.operator: 2,
    Role.engineer: 3,
    Role.admin: 4,
    Role.owner: 5,
}
# Scopes an API key may carry: a machine never manages members or keys.
API_KEY_SCOPES: frozenset[Permission] = frozenset(
    {
        Permission.workspace_read,
        Permission.designs_read,
        Permission.designs_write,
        Permission.cam_read,
        Permission.cam_run,
        Permission.machines_manage,
    }
)


def permissions_for(role: str) -> frozenset[Permission]:
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def outranks_or_equals(role: str, other: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(other)]
