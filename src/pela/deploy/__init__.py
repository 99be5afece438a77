"""Deployment: a pela model in the runtimes people serve with (ONNX Runtime)."""
