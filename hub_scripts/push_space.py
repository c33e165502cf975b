#!/usr/bin/env python
"""Build the Gradio Space folder (app, petct-fm source, pinned requirements, README front matter) and upload it.

    python hub_scripts/push_space.py --repo-id you/petct-demo --model you/petct-swin-small-autopet --dry-run

The same command as ``python -m modeling_petct.hub.push_space``, which works from a pip install.
"""

import sys

from modeling_petct.hub.push_space import main

if __name__ == "__main__":
    sys.exit(main())
