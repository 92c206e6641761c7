"""Phone numbers: E.164, as Twilio takes them."""

import re

# `\Z`, not `$`: `$` also matches before a final newline ("+15551234567\n").
E164 = re.compile(r"^\+[1-9][0-9]{1,14}\Z")
