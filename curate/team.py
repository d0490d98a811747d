"""Who reviews: the logins and their roles (``--auth``, ``--users FILE``), and what each role may do.

A login line is ``user:password`` with an optional role after whitespace, ``reviewer`` or ``admin``
(``ann:s3cret admin``). Admins alone run the bulk actions (accept all that pass, reject near-duplicates, accept
or reject the selected rows), adjudicate disagreements, start, pause, resume or cancel jobs, and export. When
no login names a role, every login is an admin (what a login could do before roles existed); as soon as one
does, a login without a role is a reviewer. Without any login the app has one local user, an admin, whose
name is typed and not verified. The reviewer recorded is always the login when there is one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import NotAllowed, SettingsError

if TYPE_CHECKING:
    from .settings import Settings

ROLES = ("reviewer", "admin")


@dataclass(frozen=True)
class Login:
    user: str
    password: str
    role: str | None = None  # None: not given on its line


def parse_logins(text: str | None, users_file: str | os.PathLike | None = None) -> list[Login]:
    """``"ann:pw1 admin,bob:pw2"`` and the lines of ``users_file`` (blank lines and ``#`` comments skipped) →
    logins. Raises SettingsError naming the item (``auth``) or the file and line, and the fix."""
    items = [(item.strip(), "auth") for item in (text or "").split(",") if item.strip()]
    if users_file:
        try:
            lines = Path(users_file).expanduser().read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(f"cannot read the users file {str(users_file)!r}: {e}. Pass a readable file of "
                                "user:password lines") from e
        items += [(line.strip(), f"{users_file}:{n}") for n, line in enumerate(lines, 1)
                  if line.strip() and not line.lstrip().startswith("#")]
    logins, seen = [], set()
    for item, where in items:
        role = None
        head, _, last = item.rpartition(" ")
        if head and last.lower() in ROLES:
            item, role = head.rstrip(), last.lower()
        user, sep, password = item.partition(":")
        if not sep or not user.strip() or not password:
            hint = "separate several with commas" if where == "auth" else "one user:password [role] per line"
            raise SettingsError(f"{where}: {item!r} is not user:password ({hint}; the role, if any, is "
                                f"{' or '.join(ROLES)} after a space)")
        if user.strip() in seen:
            raise SettingsError(f"{where}: the user {user.strip()!r} is listed twice; keep one line per user")
        seen.add(user.strip())
        logins.append(Login(user.strip(), password, role))
    return logins


class Team:
    """The logins and their roles. ``Team([])``: no login (one local admin)."""

    def __init__(self, logins: list[Login]):
        self.logins = logins
        any_role = any(lg.role for lg in logins)
        self.roles = {lg.user: lg.role or ("reviewer" if any_role else "admin") for lg in logins}

    @classmethod
    def from_settings(cls, settings: "Settings") -> "Team":
        return cls(parse_logins(settings.auth, settings.users_file))

    @property
    def has_login(self) -> bool:
        return bool(self.logins)

    @property
    def members(self) -> list[str]:
        """The logins' names, sorted (empty without a login)."""
        return sorted(self.roles)

    def role(self, user: str | None) -> str:
        if not self.has_login:
            return "admin"
        return self.roles.get(user or "", "reviewer")

    def require_admin(self, user: str | None, what: str) -> None:
        """Raise NotAllowed unless ``user`` is an admin (always allowed without a login)."""
        if self.role(user) != "admin":
            admins = ", ".join(u for u in self.members if self.roles[u] == "admin") or "nobody"
            raise NotAllowed(f"only an admin can {what}; {user} is a reviewer (admins: {admins}). An admin's "
                             "line in the users file ends with ' admin'.")
