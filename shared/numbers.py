"""Phone numbers: E.164, as Twilio takes them."""

import re

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
