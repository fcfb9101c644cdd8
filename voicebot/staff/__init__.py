"""Staff pages (``/staff`` on the admin listener): dashboard, review of misunderstood turns with
the matcher's reasons, "what would the bot answer?", and proposals of new examples.

``add_staff_routes(app, settings=..., runtime=...)`` mounts them; ``voicebot staff add`` creates
accounts (``users.StaffUsers``, argon2 hashes in ``var/staff.db``).
"""

from voicebot.staff.explain import Explanation, explain
from voicebot.staff.users import StaffUser, StaffUsers
from voicebot.staff.web import add_staff_routes

__all__ = ["Explanation", "StaffUser", "StaffUsers", "add_staff_routes", "explain"]
