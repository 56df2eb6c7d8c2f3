"""Model export to other runtimes (ONNX), dispatched to each family's exporter. See :mod:`segcore.export.onnx`."""

from .onnx import DEFAULT_OPSET, OnnxExportError, export_onnx, open_onnx, supports_onnx

__all__ = ["DEFAULT_OPSET", "OnnxExportError", "export_onnx", "open_onnx", "supports_onnx"]
