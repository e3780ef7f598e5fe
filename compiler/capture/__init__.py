"""torch.nn.Module + example inputs -> ``ir.Graph`` (torch.fx first, torch.export as the
fallback). ``compiler.capture.interpret.run_graph_numpy`` is the reference interpreter."""

from compiler.capture.api import CaptureResult, capture

__all__ = ["CaptureResult", "capture"]
