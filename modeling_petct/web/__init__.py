"""The Gradio demo: ``uploads`` (the safety rules for strangers' files), ``service`` (sessions, models, one study
end to end, no Gradio), ``app`` (the page). `petct demo` and the Space's app.py are thin launchers of ``app``."""
