"""The values that options and settings accept, shared by the magic and the modules
that act on them (kept here so that defining the magic imports nothing heavier)."""

FORMATS = ("markdown", "text", "code", "json")
APPROVE_MODES = ("auto", "ask", "never")
THINKING_LEVELS = ("minimal", "low", "medium", "high")
TIERS = ("auto", "free", "paid", "off")  # quota tiers (transport/limits.py)
