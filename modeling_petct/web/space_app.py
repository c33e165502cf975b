"""The Hugging Face Space's app.py (hub.space copies this file; also runs locally: `python -m
modeling_petct.web.space_app`; `petct demo` is the same app).

The models on offer are chosen by the operator, never by visitors: set the Space variable PETCT_DEMO_MODELS to a
comma-separated list of Hub ids (or folders). All logic lives in the petct-fm library (modeling_petct.web.app).
"""

import os

from modeling_petct.web.service import ModelShelf
from modeling_petct.web.app import build_demo, launch, models_from_env

shelf = ModelShelf(models_from_env())
demo = build_demo(shelf)

if __name__ == "__main__":
    launch(
        demo,
        server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
