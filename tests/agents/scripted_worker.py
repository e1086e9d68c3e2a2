"""A worker that writes the lines of $SCRIPTED_WORKER_LINES, then appends whatever it is sent to
$SCRIPTED_WORKER_OUT, until stdin ends. It lets a test speak to the bridge byte for byte."""

import os
import sys

with open(os.environ["SCRIPTED_WORKER_LINES"], "rb") as script:
    for line in script:
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
with open(os.environ["SCRIPTED_WORKER_OUT"], "ab", buffering=0) as out:
    for line in sys.stdin.buffer:
        out.write(line)
