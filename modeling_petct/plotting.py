"""Matplotlib for figures written to files, never a window: the one preamble every figure of the package uses."""


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (headless servers, worker processes, CI), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
